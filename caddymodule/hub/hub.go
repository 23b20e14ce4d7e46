// Package hub is hubgate's runtime: what must outlive a config reload and
// what a request needs once it is authorized. It keeps the routes to the
// running servers, the starts in flight and their queue, the websocket
// registry, the idle culler and the engine's exit events, and it proxies
// a request to a route through Caddy's reverse proxy.
//
// It is built from an injected spawner.Spawner (Docker, Kubernetes, or a
// fake in tests) and holds no config: tunables arrive through Configure on
// every Provision. It knows nothing of sessions, logins or pages: the
// caller says who the visitor is.
package hub

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/spawner"
)

// Defaults of the tunables.
const (
	DefaultRouteCacheSize      = 10000
	DefaultMaxConcurrentStarts = 10
	DefaultCullInterval        = time.Minute
	DefaultStartTimeout        = 2 * time.Minute
)

// failedStartLinger is how long a failed start is remembered, so that the
// requests waiting for it and the progress page's next refresh can all
// show the reason before a new attempt is made.
const failedStartLinger = 10 * time.Second

// TokenDeriver derives container secrets from a nonce; *session.Codec is
// one. The same master key gives every gateway instance the same secret.
type TokenDeriver interface {
	MAC(parts ...string) []byte
}

// Options are what a Runtime is built from; they identify it for its
// whole life.
type Options struct {
	// Spawner is the engine backend.
	Spawner spawner.Spawner
	// Tokens derives the per-container secrets.
	Tokens TokenDeriver
	// Logger receives operational logs; Audit the audit trail.
	Logger, Audit *zap.Logger
}

// Config holds the tunables, applied on every config load.
type Config struct {
	// RouteCacheSize bounds the routes kept in memory.
	RouteCacheSize int
	// MaxConcurrentStarts bounds the starts at once (0: no limit).
	MaxConcurrentStarts int
	// CullInterval is the culler's period.
	CullInterval time.Duration
	// StartTimeout bounds a start, from create to the app answering.
	StartTimeout time.Duration
	// EgressEnv, if set, returns the egress proxy's environment for a
	// container about to be created from spec (HTTP_PROXY and the rest);
	// an error fails the start.
	EgressEnv func(ctx context.Context, spec spawner.Spec) (map[string]string, error)
}

// Runtime is the shared runtime of one deployment.
type Runtime struct {
	logger  *zap.Logger
	audit   *zap.Logger
	spawner spawner.Spawner
	tokens  TokenDeriver
	routes  *lru.Cache[string, *Route]
	streams *Streams
	// seen remembers when users were last here, for the admin page.
	seen  *lru.Cache[string, time.Time]
	probe *http.Client

	started      time.Time
	configured   atomic.Pointer[Config]
	cullEvery    atomic.Int64 // nanoseconds
	startTimeout atomic.Int64 // nanoseconds

	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	starts map[string]*Start
	queue  startQueue

	shared     sharing
	sharedDone chan struct{}

	// warmed is closed when the first listing of running servers (done
	// in the background after a gateway start) has filled the cache.
	warmed chan struct{}
}

// New builds a runtime and starts its background work: the first listing
// of running servers, the culler and the exit watcher. It makes no
// blocking engine call.
func New(o Options, c Config) (*Runtime, error) {
	if o.Spawner == nil || o.Tokens == nil {
		return nil, fmt.Errorf("hub: a spawner and a token deriver are required")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Audit == nil {
		o.Audit = o.Logger
	}
	routes, err := lru.New[string, *Route](max(c.RouteCacheSize, DefaultRouteCacheSize))
	if err != nil {
		return nil, err
	}
	seen, err := lru.New[string, time.Time](10000)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt := &Runtime{
		logger:  o.Logger,
		audit:   o.Audit,
		spawner: o.Spawner,
		tokens:  o.Tokens,
		routes:  routes,
		streams: newStreams(),
		seen:    seen,
		probe: &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		started: time.Now(),
		ctx:     ctx,
		cancel:  cancel,
		starts:  make(map[string]*Start),
		warmed:  make(chan struct{}),

		sharedDone: make(chan struct{}),
	}
	rt.shared.kick = make(chan struct{}, 1)
	rt.Configure(c)
	go rt.warm()
	go rt.cullLoop()
	go rt.watchExits()
	return rt, nil
}

// Configure applies the tunables of a (re)loaded config; the routes, the
// starts in flight and the queue stay.
func (rt *Runtime) Configure(c Config) {
	if c.RouteCacheSize <= 0 {
		c.RouteCacheSize = DefaultRouteCacheSize
	}
	if c.CullInterval <= 0 {
		c.CullInterval = DefaultCullInterval
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	rt.configured.Store(&c)
	rt.routes.Resize(c.RouteCacheSize)
	rt.queue.setLimit(c.MaxConcurrentStarts)
	rt.cullEvery.Store(int64(c.CullInterval))
	rt.startTimeout.Store(int64(c.StartTimeout))
}

// Configured is the tunables last applied.
func (rt *Runtime) Configured() Config { return *rt.configured.Load() }

// Spawner is the engine backend the runtime was built with.
func (rt *Runtime) Spawner() spawner.Spawner { return rt.spawner }

// Streams is the registry of open websockets.
func (rt *Runtime) Streams() *Streams { return rt.streams }

// Destruct stops background work when the last config using this runtime
// is unloaded. Containers keep running.
func (rt *Runtime) Destruct() error {
	rt.cancel()
	if rt.shared.cfg.Load() != nil {
		// The last activity record and the lease's release.
		select {
		case <-rt.sharedDone:
		case <-time.After(5 * time.Second):
		}
	}
	if c, ok := rt.spawner.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// MarkSeen records that user was here now.
func (rt *Runtime) MarkSeen(user string) {
	rt.seen.Add(user, time.Now().UTC())
}

// Seen returns every user seen recently and when.
func (rt *Runtime) Seen() map[string]time.Time {
	out := make(map[string]time.Time, rt.seen.Len())
	for _, u := range rt.seen.Keys() {
		if t, ok := rt.seen.Peek(u); ok {
			out[u] = t
		}
	}
	return out
}

// Stats is what the health endpoint reports.
type Stats struct {
	RoutesCached, StartsInFlight, StartsRunning, StartsWaiting int
}

// Stats counts routes and starts.
func (rt *Runtime) Stats() Stats {
	running, waiting := rt.queue.stats()
	return Stats{RoutesCached: rt.routes.Len(), StartsInFlight: rt.inFlight(), StartsRunning: running, StartsWaiting: waiting}
}
