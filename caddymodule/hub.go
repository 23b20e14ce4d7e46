package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	lru "github.com/hashicorp/golang-lru/v2"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/spawner"
	"github.com/hubgate/hubgate/spawner/docker"
)

// hubs holds the runtime that must survive config reloads: the spawner,
// the route cache, the starts in flight and the login limiter. On reload
// Caddy provisions the new handler (LoadOrNew finds the running hub) before
// it cleans up the old one (Delete drops a reference), so nothing in
// flight is lost.
var hubs = caddy.NewUsagePool()

// failedStartLinger is how long a failed start is remembered, so that the
// requests waiting for it and the progress page's next refresh can all
// show the reason before a new attempt is made.
const failedStartLinger = 10 * time.Second

// hub is the shared runtime of one deployment.
type hub struct {
	logger  *zap.Logger
	spawner spawner.Spawner
	routes  *lru.Cache[string, *route]
	limiter *limiter
	streams *streams
	// tokens derives the container secrets (the handler's session codec).
	tokens tokenDeriver
	// auth holds session revocations, used OAuth states and the GitHub
	// membership re-check state (see revoke.go, oauth.go).
	auth *authState
	// seen remembers when users last logged in, opened the home page or
	// started a server, for the admin page.
	seen  *lru.Cache[string, time.Time]
	probe *http.Client

	audit   *zap.Logger
	started time.Time
	// cullEvery is the culler's period in nanoseconds (set from config).
	cullEvery atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	starts map[string]*start
	queue  startQueue

	// warmed is closed when the first listing of running servers (done
	// in the background after a gateway start) has filled the cache.
	warmed chan struct{}
}

// route is a running user server the gateway can proxy to.
type route struct {
	key       string
	user      string
	server    string
	inst      spawner.Instance
	auth      string // Authorization header value sent upstream
	upstreams []*reverseproxy.Upstream
	// lastActivity is Unix nanoseconds of the last proxied request.
	lastActivity atomic.Int64
}

// start is one start of a user's server in flight; concurrent requests
// for the same server join it instead of starting another.
type start struct {
	done     chan struct{}
	began    time.Time
	route    *route
	err      error
	finished time.Time
	// ticket is set while the start waits for a slot in the queue.
	ticket atomic.Pointer[queued]
}

// position is the start's place in the queue of starts, 0 once it runs.
func (hb *hub) position(st *start) int {
	return hb.queue.position(st.ticket.Load())
}

func routeKey(user, server string) string { return user + "\x00" + server }

func newHub(h *Handler) (*hub, error) {
	sp, err := docker.New(docker.Config{
		Host:    h.Docker.Host,
		Network: h.Docker.Network,
		Isolate: *h.Docker.Isolate,
		Prefix:  h.Name,
	}, h.logger.Named("docker"))
	if err != nil {
		return nil, fmt.Errorf("docker spawner: %w", err)
	}
	routes, err := lru.New[string, *route](max(h.RouteCacheSize, 1))
	if err != nil {
		return nil, err
	}
	seen, err := lru.New[string, time.Time](10000)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	hb := &hub{
		seen:    seen,
		tokens:  h.codec,
		logger:  h.logger,
		spawner: sp,
		routes:  routes,
		limiter: newLimiter(h.LoginFailuresPerUser, h.LoginFailuresPerIP, time.Duration(h.LoginWindow)),
		streams: newStreams(),
		auth:    newAuthState(),
		probe: &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		ctx:     ctx,
		cancel:  cancel,
		starts:  make(map[string]*start),
		warmed:  make(chan struct{}),
		audit:   caddy.Log().Named("hubgate.audit"),
		started: time.Now(),
	}
	hb.cullEvery.Store(int64(h.CullInterval))
	go hb.warm()
	go hb.cullLoop()
	go hb.watchExits()
	return hb, nil
}

// warm lists the deployment's running containers once, so a restarted
// gateway routes to every server that survived it without a start.
func (hb *hub) warm() {
	defer close(hb.warmed)
	ctx, cancel := context.WithTimeout(hb.ctx, 30*time.Second)
	defer cancel()
	insts, err := hb.spawner.List(ctx)
	if err != nil {
		hb.logger.Warn("listing running servers failed; they will be found on first request", zap.Error(err))
		return
	}
	hb.logger.Info("reattached to running servers", zap.Int("servers", hb.syncRoutes(insts)))
}

// syncRoutes makes the route cache agree with a listing of the engine:
// running servers it lacks are added, cached routes whose container is no
// longer the running one are dropped. It reports the running servers.
func (hb *hub) syncRoutes(insts []spawner.Instance) int {
	running := make(map[string]spawner.Instance, len(insts))
	for _, inst := range insts {
		if inst.Running && inst.Addr != "" {
			running[routeKey(inst.User, inst.Server)] = inst
		}
	}
	for _, key := range hb.routes.Keys() {
		if rt, ok := hb.routes.Peek(key); ok && running[key].ID != rt.inst.ID {
			hb.forget(rt)
		}
	}
	for key, inst := range running {
		if _, ok := hb.routes.Peek(key); !ok {
			rt := newRoute(inst, hb.tokens)
			// No activity seen here yet: the culler counts from the later
			// of this gateway's start and the container's creation.
			rt.lastActivity.Store(inst.Created.UnixNano())
			hb.routes.ContainsOrAdd(key, rt)
		}
	}
	return len(running)
}

// tokenDeriver derives container secrets; *session.Codec is one.
type tokenDeriver interface {
	MAC(parts ...string) []byte
}

func containerToken(codec tokenDeriver, nonce string) string {
	return fmt.Sprintf("%x", codec.MAC("hubgate container token v1", nonce))
}

func newRoute(inst spawner.Instance, codec tokenDeriver) *route {
	rt := &route{
		key:       routeKey(inst.User, inst.Server),
		user:      inst.User,
		server:    inst.Server,
		inst:      inst,
		auth:      "token " + containerToken(codec, inst.Nonce),
		upstreams: []*reverseproxy.Upstream{{Dial: inst.Addr}},
	}
	rt.lastActivity.Store(time.Now().UnixNano())
	return rt
}

// lookup returns the cached route of a running server.
func (hb *hub) lookup(key string) (*route, bool) {
	return hb.routes.Get(key)
}

// forget drops a route, for example after the proxy found it dead.
func (hb *hub) forget(rt *route) {
	if cur, ok := hb.routes.Peek(rt.key); ok && cur == rt {
		hb.routes.Remove(rt.key)
	}
}

// begin returns the start in flight for key, or begins one with run. A
// start that failed less than failedStartLinger ago is returned as is (so
// every waiter sees the reason); once the caller has shown the failure it
// calls dismiss, and the next request begins anew.
func (hb *hub) begin(key string, timeout time.Duration, run func(ctx context.Context) (*route, error)) *start {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if st, ok := hb.starts[key]; ok {
		if st.finished.IsZero() || time.Since(st.finished) < failedStartLinger {
			return st
		}
		delete(hb.starts, key)
	}
	st := &start{done: make(chan struct{}), began: time.Now()}
	hb.starts[key] = st
	go func() {
		var rt *route
		err := hb.queue.acquire(hb.ctx, func(w *queued) { st.ticket.Store(w) })
		if err == nil {
			st.ticket.Store(nil)
			ctx, cancel := context.WithTimeout(hb.ctx, timeout)
			rt, err = run(ctx)
			cancel()
			hb.queue.release()
		}
		hb.mu.Lock()
		defer hb.mu.Unlock()
		st.route, st.err, st.finished = rt, err, time.Now()
		if err == nil {
			hb.routes.Add(key, rt)
			delete(hb.starts, key)
		}
		close(st.done)
	}()
	return st
}

// dismiss forgets a failed start once its reason was shown.
func (hb *hub) dismiss(key string, st *start) {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if hb.starts[key] == st && !st.finished.IsZero() {
		delete(hb.starts, key)
	}
}

// pending reports the start in flight for key, if any.
func (hb *hub) pending(key string) (*start, bool) {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	st, ok := hb.starts[key]
	return st, ok && st.finished.IsZero()
}

// waitReady polls the app until it answers HTTP on its port with the
// container secret, the container stops running, or ctx ends.
func (hb *hub) waitReady(ctx context.Context, rt *route, path string) error {
	url := "http://" + rt.inst.Addr + path
	delay := 20 * time.Millisecond
	lastCheck := time.Now()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("probe request: %w", err)
		}
		req.Header.Set("Authorization", rt.auth)
		resp, err := hb.probe.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Since(lastCheck) > time.Second {
			lastCheck = time.Now()
			inst, gerr := hb.spawner.Get(ctx, rt.user, rt.server)
			switch {
			case errors.Is(gerr, spawner.ErrNotFound):
				return errContainerGone
			case gerr == nil && !inst.Running:
				return fmt.Errorf("%w (status %s)", errContainerExited, inst.Status)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("app did not answer on %s: %w", rt.inst.Addr, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 250*time.Millisecond)
	}
}

var (
	errContainerExited = errors.New("container exited while starting")
	errContainerGone   = errors.New("container was removed while starting")
)

// Destruct stops background work when the last config using this hub is
// unloaded. Containers keep running.
func (hb *hub) Destruct() error {
	hb.cancel()
	if c, ok := hb.spawner.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// inFlight counts the starts not finished yet.
func (hb *hub) inFlight() int {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	n := 0
	for _, st := range hb.starts {
		if st.finished.IsZero() {
			n++
		}
	}
	return n
}

// watchExits drops the route of every server whose container stops, as the
// engine reports it. When the event stream breaks (say, the engine
// restarts) it reconnects with backoff and then reconciles the cache with
// a listing.
func (hb *hub) watchExits() {
	w, ok := hb.spawner.(spawner.ExitWatcher)
	if !ok {
		return
	}
	backoff := time.Second
	for {
		connected := time.Now()
		err := w.WatchExits(hb.ctx, func(user, server, id string) {
			if rt, ok := hb.routes.Peek(routeKey(user, server)); ok && rt.inst.ID == id {
				hb.forget(rt)
				hb.logger.Info("server stopped; route dropped", zap.String("user", user), zap.String("server", server))
			}
		})
		if hb.ctx.Err() != nil {
			return
		}
		if time.Since(connected) > time.Minute {
			backoff = time.Second
		}
		hb.logger.Warn("container event stream ended; reconnecting", zap.Error(err), zap.Duration("after", backoff))
		select {
		case <-hb.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
		// Exits may have been missed meanwhile.
		ctx, cancel := context.WithTimeout(hb.ctx, 30*time.Second)
		if insts, err := hb.spawner.List(ctx); err == nil {
			hb.syncRoutes(insts)
		}
		cancel()
	}
}

// markSeen records that user was here now.
func (hb *hub) markSeen(user string) {
	hb.seen.Add(user, time.Now().UTC())
}

// awaitWarm waits (at most limit) for the first listing of running servers
// after a gateway start. It reports whether it had to wait, that is
// whether a cache miss may have been that listing's lateness.
func (hb *hub) awaitWarm(ctx context.Context, limit time.Duration) bool {
	select {
	case <-hb.warmed:
		return false
	default:
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-hb.warmed:
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}
