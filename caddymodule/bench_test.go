package caddymodule

// Benchmarks of the per-request cost of hubgate's steady state (logged in,
// container running): the cookie check, the policy lookup and the route
// lookup, alone and together, and the whole handler in front of Caddy's
// reverse proxy against plain reverse_proxy, in process.
//
//	go test -run='^$' -bench=. -benchmem ./caddymodule/
//
// The pieces are built directly (session.NewCodec, a policy file loaded by
// policies.NewWatcher, the hub with its LRU route cache from newHub, with
// no container engine behind it) rather than by provisioning hubgate in
// Caddy, so the numbers are hubgate's own work and nothing else.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	lru "github.com/hashicorp/golang-lru/v2"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
)

const (
	benchUser   = "bench"
	benchServer = "notebook"
	benchPath   = "/user/bench/notebook/whoami"
	// benchTeams x benchMembers other users make the policy a realistic
	// size; benchRoutes running servers fill the route cache.
	benchTeams   = 20
	benchMembers = 25
	benchRoutes  = 1000
)

// benchPolicy returns a policy with the bench user in one team among
// benchTeams others, every team with benchMembers members and a group.
func benchPolicy() string {
	var b strings.Builder
	b.WriteString("admins: [admin]\nimages:\n")
	b.WriteString("  notebook: {image: \"hubgate/testapp:latest\", port: 8888}\n")
	b.WriteString("  rstudio: {image: \"hubgate/testapp:latest\", port: 8888}\n")
	b.WriteString("teams:\n")
	for t := range benchTeams {
		fmt.Fprintf(&b, "  team%02d:\n    members: [", t)
		for m := range benchMembers {
			if m > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "user%02d%02d", t, m)
		}
		if t == benchTeams/2 {
			b.WriteString(", " + benchUser)
		}
		fmt.Fprintf(&b, "]\n    groups: [\"oidc:group%02d\"]\n    images: [rstudio, notebook]\n", t)
	}
	return b.String()
}

// benchFixture is a Handler with the pieces the steady state uses.
type benchFixture struct {
	h      *Handler
	cookie string // the Cookie header a logged-in browser sends
}

func newBenchFixture(b *testing.B) *benchFixture {
	b.Helper()
	codec, err := session.NewCodec(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(benchPolicy()), 0o644); err != nil {
		b.Fatal(err)
	}
	w, err := policies.NewWatcher(zap.NewNop(), []string{dir}, nil)
	if err != nil {
		b.Fatal(err)
	}
	h := &Handler{
		Name: "hgbench",
		// The hub is made by newHub as in production, but its engine is
		// an address nobody listens on: no benchmark calls the engine
		// (the steady state must not), and nothing reaches a real one.
		Docker:  &DockerConfig{Host: "unix://" + filepath.Join(dir, "no-engine.sock")},
		logger:  zap.NewNop(),
		audit:   zap.NewNop(),
		watcher: w,
		codec:   codec,
	}
	h.applyDefaults()
	// The cache of opened sessions, as Provision makes it.
	if h.sessions, err = lru.New[string, session.Session](sessionCacheSize); err != nil {
		b.Fatal(err)
	}
	hb, err := newHub(h)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = hb.Destruct() })
	h.hub = hb
	for i := range benchRoutes {
		inst := spawner.Instance{
			User: fmt.Sprintf("user%04d", i), Server: benchServer, Nonce: fmt.Sprint(i),
			Addr: fmt.Sprintf("10.0.%d.%d:8888", i/250, i%250+2), Running: true,
		}
		rt := newRoute(inst, codec)
		hb.routes.Add(rt.key, rt)
	}
	now := time.Now()
	sealed, err := codec.Seal(session.PurposeSession, session.Session{
		ID: session.NewID(), User: benchUser, Provider: "local",
		IssuedAt: now.Unix(), Expires: now.Add(defaultSessionTTL).Unix(),
	})
	if err != nil {
		b.Fatal(err)
	}
	// What a browser on a Jupyter server sends: the app's own cookies too.
	cookie := "_xsrf=2|a1b2c3d4|0123456789abcdef0123456789abcdef|1732560000; " +
		sessionCookie + "=" + sealed + "; username-localhost-8888=\"2|1:0|10:1732560000|23:username-localhost-8888|44:abc\""
	return &benchFixture{h: h, cookie: cookie}
}

// addRoute caches a running server of the bench user at addr.
func (f *benchFixture) addRoute(addr string) {
	inst := spawner.Instance{User: benchUser, Server: benchServer, Nonce: "bench", Addr: addr, Running: true}
	rt := newRoute(inst, f.h.codec)
	f.h.hub.routes.Add(rt.key, rt)
}

func (f *benchFixture) request() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://localhost"+benchPath, nil)
	r.Header.Set("Cookie", f.cookie)
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "bench")
	return r
}

// BenchmarkCookieCheck is step 1: find the session cookie, then either
// take the opened session from the cache ("cached", every request of a
// logged-in browser but its first) or decrypt and verify it (AES-256-GCM)
// and decode its JSON ("uncached", the first); then check its expiry and
// revocation.
func BenchmarkCookieCheck(b *testing.B) {
	f := newBenchFixture(b)
	r := f.request()
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if s := f.h.currentSession(r); s == nil {
				b.Fatal("session refused")
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		cache := f.h.sessions
		f.h.sessions = nil
		defer func() { f.h.sessions = cache }()
		b.ReportAllocs()
		for b.Loop() {
			if s := f.h.currentSession(r); s == nil {
				b.Fatal("session refused")
			}
		}
	})
}

// BenchmarkPolicyLookup is step 2 as serveUser does it: the current
// policy, Known, the image, Allowed.
func BenchmarkPolicyLookup(b *testing.B) {
	f := newBenchFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		pol := f.h.watcher.Current()
		if !pol.Known(benchUser, nil) || pol.Images[benchServer] == nil || !pol.Allowed(benchUser, nil, benchServer) {
			b.Fatal("policy refused")
		}
	}
}

// BenchmarkRouteLookup is step 3: the route key and the LRU hit.
func BenchmarkRouteLookup(b *testing.B) {
	f := newBenchFixture(b)
	f.addRoute("127.0.0.1:1")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := f.h.hub.lookup(routeKey(benchUser, benchServer)); !ok {
			b.Fatal("route missing")
		}
	}
}

// BenchmarkRouteLookupParallel is the LRU hit from every core at once:
// golang-lru's Get takes an exclusive lock (it moves the entry to front).
func BenchmarkRouteLookupParallel(b *testing.B) {
	f := newBenchFixture(b)
	f.addRoute("127.0.0.1:1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := f.h.hub.lookup(routeKey(benchUser, benchServer)); !ok {
				panic("route missing")
			}
		}
	})
}

// steadyState is steps 1 to 3 as serveUser runs them, with the path check.
func steadyState(h *Handler, r *http.Request) *route {
	s := h.currentSession(r)
	if s == nil {
		return nil
	}
	up, canonical, ok := parseUserPath(r)
	if !ok || !canonical || policies.NormalizeUser(up.name) != s.User {
		return nil
	}
	pol := h.watcher.Current()
	if !pol.Known(s.User, s.Groups) || pol.Images[up.server] == nil || !pol.Allowed(s.User, s.Groups, up.server) {
		return nil
	}
	rt, _ := h.hub.lookup(routeKey(s.User, up.server))
	return rt
}

// BenchmarkCookiePolicyRoute is steps 1 to 3 together.
func BenchmarkCookiePolicyRoute(b *testing.B) {
	f := newBenchFixture(b)
	f.addRoute("127.0.0.1:1")
	r := f.request()
	b.ReportAllocs()
	for b.Loop() {
		if steadyState(f.h, r) == nil {
			b.Fatal("steady state refused")
		}
	}
}

// BenchmarkCookiePolicyRouteParallel is steps 1 to 3 from every core.
func BenchmarkCookiePolicyRouteParallel(b *testing.B) {
	f := newBenchFixture(b)
	f.addRoute("127.0.0.1:1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := f.request()
		for pb.Next() {
			if steadyState(f.h, r) == nil {
				panic("steady state refused")
			}
		}
	})
}

// BenchmarkProxyPrep is what proxyTo does to the request before Caddy's
// proxy sees it (header stripping, the secret, the user header), plus
// restoring the header each round; BenchmarkProxyPrep/restore_only is
// that restoring alone, to subtract.
func BenchmarkProxyPrep(b *testing.B) {
	f := newBenchFixture(b)
	r := f.request()
	orig := r.Header.Clone()
	rt := &route{auth: "token " + strings.Repeat("ab", 32)}
	b.Run("strip_and_set", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			restoreHeader(r.Header, orig)
			stripIdentityHeaders(r.Header)
			stripOurCookies(r.Header)
			r.Header.Set("Authorization", rt.auth)
			r.Header.Set("X-Hubgate-User", benchUser)
		}
	})
	b.Run("restore_only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			restoreHeader(r.Header, orig)
		}
	})
}

func restoreHeader(dst, src http.Header) {
	clear(dst)
	for k, v := range src {
		dst[k] = v
	}
}

// BenchmarkProxy serves one small GET end to end in process, through
// Caddy's reverse proxy to a local upstream: "caddy" is plain
// reverse_proxy (static upstream, header_up Authorization) with hubgate's
// transport settings, "hubgate" is hubgate's whole handler, and
// "interleaved" alternates the two request by request. The difference
// is hubgate's per-request cost, the dynamic upstream included. The request
// is built in process (no client connection, no TLS, no access log); the
// upstream is a Go server on loopback in this same process, so cpu-ns/op
// counts its work too.
func BenchmarkProxy(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 900)
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "token ") {
			http.Error(w, "no token", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go upstream.Serve(ln)
	b.Cleanup(func() { upstream.Close() })
	addr := ln.Addr().String()

	// A running (empty) config gives the context the apps the proxy
	// needs (events); nothing listens and nothing is persisted.
	if err := caddy.Load([]byte(`{"admin":{"disabled":true,"config":{"persist":false}},"logging":{"logs":{"default":{"level":"ERROR"}}}}`), true); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = caddy.Stop() })
	cctx, cancel := caddy.NewContext(caddy.ActiveContext())
	b.Cleanup(cancel)

	f := newBenchFixture(b)
	f.addRoute(addr)
	if err := f.h.provisionProxy(cctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.h.proxy.Cleanup() })

	plain := &reverseproxy.Handler{
		Transport: &reverseproxy.HTTPTransport{
			DialTimeout: caddy.Duration(5 * time.Second),
			KeepAlive:   &reverseproxy.KeepAlive{MaxIdleConnsPerHost: defaultMaxIdleConnsPerHost},
		},
		Upstreams:     reverseproxy.UpstreamPool{{Dial: addr}},
		FlushInterval: caddy.Duration(-1),
		Headers: &headers.Handler{Request: &headers.HeaderOps{
			Set: http.Header{"Authorization": []string{"token " + strings.Repeat("ab", 32)}},
		}},
	}
	if err := plain.Transport.(*reverseproxy.HTTPTransport).Provision(cctx); err != nil {
		b.Fatal(err)
	}
	if err := plain.Provision(cctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = plain.Cleanup() })

	cases := []struct {
		name  string
		serve func(http.ResponseWriter, *http.Request) error
	}{
		{"caddy", func(w http.ResponseWriter, r *http.Request) error { return plain.ServeHTTP(w, r, nil) }},
		{"hubgate", func(w http.ResponseWriter, r *http.Request) error { return f.h.ServeHTTP(w, r, nil) }},
	}
	srv := new(caddyhttp.Server)
	serve := func(name string, fn func(http.ResponseWriter, *http.Request) error, w *discardWriter) {
		r := f.request()
		r.RemoteAddr = "127.0.0.1:40000"
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, srv)
		w.reset()
		if err := fn(w, r); err != nil || w.status != http.StatusOK || w.n != len(body) {
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
