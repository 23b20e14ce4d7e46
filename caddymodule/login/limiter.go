package login

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

// attempt counts a login attempt for user from ip before the password is
// checked, and reports whether it must be refused now (the limit was
// already reached) and for how long. Counting first means concurrent
// guesses cannot all pass the check while their bcrypt comparisons run.
func (l *limiter) attempt(user, ip string, now time.Time) (bool, time.Duration) {
	return l.attemptWith(user, ip, now, [2]int{}, [2]time.Time{})
}

// attemptWith is attempt with the counts other replicas hold for the user
// and the IP added (and their windows' ends).
func (l *limiter) attemptWith(user, ip string, now time.Time, others [2]int, othersUntil [2]time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	windows := [2]*window{}
	for i, c := range l.keyed(user, ip) {
		w, ok := c.cache.Peek(c.key)
		if !ok || now.After(w.until) {
			w = &window{until: now.Add(l.window)}
			c.cache.Add(c.key, w)
		}
		if w.count+others[i] >= c.limit {
			until := w.until
			if others[i] > 0 && othersUntil[i].After(until) {
				until = othersUntil[i]
			}
			wait = max(wait, until.Sub(now))
		}
		windows[i] = w
	}
	if wait > 0 {
		return true, wait
	}
	for _, w := range windows {
		w.count++
	}
	return false, 0
}

// succeed takes back the attempt of a good login: the user's failures are
// cleared and the IP's attempt is not counted as a failure.
func (l *limiter) succeed(user, ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.users.Remove(user)
	if w, ok := l.ips.Peek(ip); ok && w.count > 0 {
		w.count--
	}
}

// current is this replica's window for a user ("user") or an IP ("ip")
// now, or a zero window.
func (l *limiter) current(kind, key string) window {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.ips
	if kind == "user" {
		c = l.users
	}
	if w, ok := c.Peek(key); ok {
		return *w
	}
	return window{}
}

// keyed is the user's and the IP's cache, key and limit, in that order.
// Callers hold mu.
func (l *limiter) keyed(user, ip string) [2]keyedWindow {
	return [2]keyedWindow{{l.users, user, l.perUser}, {l.ips, ip, l.perIP}}
}

type keyedWindow struct {
	cache *expirable.LRU[string, *window]
	key   string
	limit int
}

// uncount takes back an attempt that was counted but then refused for
// another reason than its password (the shared storage failed).
func (l *limiter) uncount(user, ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.keyed(user, ip) {
		if w, ok := c.cache.Peek(c.key); ok && w.count > 0 {
			w.count--
		}
	}
}
