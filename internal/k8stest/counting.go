package k8stest

import (
	"net/http"
	"sync"

	"k8s.io/client-go/rest"
)

// Counter counts the HTTP requests made through rest.Configs it wraps, by
// "METHOD path".
type Counter struct {
	mu     sync.Mutex
	total  int
	byCall map[string]int
}

// Wrap returns a copy of cfg whose requests Counter counts.
func (c *Counter) Wrap(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	prev := out.WrapTransport
	out.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		if prev != nil {
			rt = prev(rt)
		}
		return countingRT{c: c, next: rt}
	}
	return out
}

// Total returns the number of requests so far.
func (c *Counter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Calls returns a copy of the counts by "METHOD path?watch".
func (c *Counter) Calls() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.byCall))
	for k, v := range c.byCall {
		out[k] = v
	}
	return out
}

type countingRT struct {
	c    *Counter
	next http.RoundTripper
}

func (rt countingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	key := req.Method + " " + req.URL.Path
	if req.URL.Query().Get("watch") == "true" {
		key += "?watch"
	}
	rt.c.mu.Lock()
	rt.c.total++
	if rt.c.byCall == nil {
		rt.c.byCall = map[string]int{}
	}
	rt.c.byCall[key]++
	rt.c.mu.Unlock()
	return rt.next.RoundTrip(req)
}
