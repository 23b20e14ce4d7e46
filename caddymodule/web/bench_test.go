package web

// Benchmarks of the per-request cost of hubgate's steady state (logged in,
// container running), in process: the whole site in front of Caddy's
// reverse proxy against plain reverse_proxy, and the route lookup.
//
//	go test -run='^$' -bench=. -benchmem ./caddymodule/web/

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/spawner/contract"
)

const (
	benchUser   = "alice"
	benchServer = "notebook"
	benchPath   = "/user/alice/notebook/whoami"
)

// addRoute makes alice's notebook a running server (a real start through
// the fixture's spawner).
func (f *fixture) addRoute(b testing.TB) *hub.Route {
	b.Helper()
	cookie, _ := f.cookie(b, benchUser)
	if w := f.do(b, request("GET", "/user/alice/notebook/", cookie)); w.Code != http.StatusOK {
		b.Fatalf("start: %d %s", w.Code, w.Body)
	}
	r, ok := f.hub.Lookup(hub.Key(benchUser, benchServer))
	if !ok {
		b.Fatal("no route after start")
	}
	return r
}

// BenchmarkRouteLookup is the LRU hit of the steady state.
func BenchmarkRouteLookup(b *testing.B) {
	f := newFixture(b, 5*time.Second)
	f.addRoute(b)
	key := hub.Key(benchUser, benchServer)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := f.hub.Lookup(key); !ok {
			b.Fatal("route missing")
		}
	}
}

// BenchmarkProxy serves one small GET end to end in process, through
// Caddy's reverse proxy to a local upstream: "caddy" is plain
// reverse_proxy (static upstream, header_up Authorization) with hubgate's
// transport settings, "hubgate" is hubgate's whole handler, and
// "interleaved" alternates the two request by request. The difference
// is hubgate's per-request cost, the dynamic upstream included. The request
// is built in process (no client connection, no TLS, no access log); the
// upstream is the fake spawner's app on loopback in this same process, so
// cpu-ns/op counts its work too.
func BenchmarkProxy(b *testing.B) {
	f := newFixture(b, 5*time.Second)
	cctx := caddyContext(b)
	cookie, _ := f.cookie(b, benchUser)
	route := f.addRoute(b)
	addr := route.Instance().Addr
	token := f.spawner.Specs[0].Env[contract.Token]

	plain := &reverseproxy.Handler{
		Transport: &reverseproxy.HTTPTransport{
			DialTimeout: caddy.Duration(5 * time.Second),
			KeepAlive:   &reverseproxy.KeepAlive{MaxIdleConnsPerHost: 8},
		},
		Upstreams: reverseproxy.UpstreamPool{{Dial: addr}},
		Headers: &headers.Handler{Request: &headers.HeaderOps{
			Set: http.Header{"Authorization": []string{"token " + token}},
		}},
	}
	if err := plain.Transport.(*reverseproxy.HTTPTransport).Provision(cctx); err != nil {
		b.Fatal(err)
	}
	if err := plain.Provision(cctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = plain.Cleanup() })

	_ = route
	cases := []struct {
		name  string
		serve func(http.ResponseWriter, *http.Request) error
	}{
		{"caddy", func(w http.ResponseWriter, r *http.Request) error { return plain.ServeHTTP(w, r, nil) }},
		{"hubgate", func(w http.ResponseWriter, r *http.Request) error { return f.site.ServeHTTP(w, r) }},
	}
	srv := new(caddyhttp.Server)
	serve := func(name string, fn func(http.ResponseWriter, *http.Request) error, w *discardWriter) {
		r := request(http.MethodGet, benchPath, cookie, "Accept", "application/json", "User-Agent", "bench")
		r.RemoteAddr = "127.0.0.1:40000"
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, srv)
		w.reset()
		if err := fn(w, r); err != nil || w.status != http.StatusOK || w.n == 0 {
			panic(fmt.Sprintf("%s: status %d, %d bytes, err %v", name, w.status, w.n, err))
		}
	}
	// interleaved serves one request each way per iteration and reports
	// the median time of each and their difference: other load on the
	// machine then hits both alike, which separate runs cannot promise.
	b.Run("interleaved", func(b *testing.B) {
		w := new(discardWriter)
		var tc, th []time.Duration
		for b.Loop() {
			t0 := time.Now()
			serve("caddy", cases[0].serve, w)
			t1 := time.Now()
			serve("hubgate", cases[1].serve, w)
			t2 := time.Now()
			tc, th = append(tc, t1.Sub(t0)), append(th, t2.Sub(t1))
		}
		mc, mh := medianOf(tc), medianOf(th)
		b.ReportMetric(float64(mc), "caddy-p50-ns")
		b.ReportMetric(float64(mh), "hubgate-p50-ns")
		b.ReportMetric(float64(mh-mc), "extra-p50-ns")
	})
	for _, c := range cases {
		serveOnce := func(w *discardWriter) { serve(c.name, c.serve, w) }
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			w := new(discardWriter)
			cpu := processCPU()
			for b.Loop() {
				serveOnce(w)
			}
			reportCPU(b, cpu)
		})
		b.Run(c.name+"_parallel", func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				w := new(discardWriter)
				for pb.Next() {
					serveOnce(w)
				}
			})
			reportCPU(b, cpu)
		})
	}
}

func medianOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// processCPU is the CPU time this process has used (user + system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds cpu-ns/op: the process's CPU time per request (client,
// proxy and upstream together), which other load on the machine disturbs
// far less than the wall time of ns/op does.
func reportCPU(b *testing.B, since time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-since)/float64(b.N), "cpu-ns/op")
	}
}

// discardWriter is a ResponseWriter that counts and drops the body.
type discardWriter struct {
	hdr    http.Header
	status int
	n      int
}

func (w *discardWriter) reset() {
	if w.hdr == nil {
		w.hdr = make(http.Header, 8)
	}
	clear(w.hdr)
	w.status, w.n = 0, 0
}

func (w *discardWriter) Header() http.Header { return w.hdr }

func (w *discardWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

func (w *discardWriter) Flush() {}

var _ io.Writer = (*discardWriter)(nil)
