package caddymodule

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// limiter counts failed logins per user name and per client IP in a fixed
// window. It is bounded in memory (an expiring LRU), so a flood of made-up
// user names cannot grow it without limit.
type limiter struct {
	perUser, perIP int
	window         time.Duration
	mu             sync.Mutex
	users          *expirable.LRU[string, *window]
	ips            *expirable.LRU[string, *window]
}

type window struct {
	count int
	until time.Time
}

func newLimiter(perUser, perIP int, win time.Duration) *limiter {
	return &limiter{
		perUser: perUser,
		perIP:   perIP,
		window:  win,
		users:   expirable.NewLRU[string, *window](100000, nil, win),
		ips:     expirable.NewLRU[string, *window](100000, nil, win),
	}
}

// configure applies new limits (after a config reload); counts so far stay.
func (l *limiter) configure(perUser, perIP int, win time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.perUser, l.perIP, l.window = perUser, perIP, win
}

// blocked reports whether a login for user from ip must be refused now,
// and for how long the refusal lasts.
func (l *limiter) blocked(user, ip string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	if w, ok := l.users.Peek(user); ok && w.count >= l.perUser && now.Before(w.until) {
		wait = max(wait, w.until.Sub(now))
	}
	if w, ok := l.ips.Peek(ip); ok && w.count >= l.perIP && now.Before(w.until) {
		wait = max(wait, w.until.Sub(now))
	}
	return wait > 0, wait
}

// fail records a failed login.
func (l *limiter) fail(user, ip string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	bump := func(c *expirable.LRU[string, *window], k string) {
		w, ok := c.Peek(k)
		if !ok || now.After(w.until) {
			w = &window{until: now.Add(l.window)}
			c.Add(k, w)
		}
		w.count++
	}
	bump(l.users, user)
	bump(l.ips, ip)
}

// succeed clears the user's failures after a good login.
func (l *limiter) succeed(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.users.Remove(user)
}
