// Package caddymodule holds hubgate's Caddy modules: the HTTP handler that
// logs people in, checks the policy on every request, starts or finds each
// user's container and proxies to it through Caddy's own reverse proxy.
package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	lru "github.com/hashicorp/golang-lru/v2"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults for the handler's optional settings.
const (
	defaultName                = "hubgate"
	defaultSessionTTL          = 24 * time.Hour
	defaultStartTimeout        = 2 * time.Minute
	defaultStartWait           = 3 * time.Second
	defaultRouteCacheSize      = 10000
	defaultMaxIdleConnsPerHost = 128
	defaultLoginFailuresUser   = 5
	defaultLoginFailuresIP     = 20
	defaultLoginWindow         = 15 * time.Minute
	defaultMaxConcurrentStarts = 10
	defaultCullInterval        = time.Minute
	sessionCacheSize           = 10000
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}$`)

// Handler is hubgate's HTTP handler. It owns the whole site it is placed in:
// the home page at /, the login, logout and health endpoints under /hub/,
// and every user's server under /user/{name}/{server}/.
type Handler struct {
	// Policy lists the policy files or folders (every *.yaml and *.yml in
	// a folder is merged). Required. The policy is validated on load and
	// reloaded when a file changes; a bad edit keeps the last good policy.
	Policy []string `json:"policy,omitempty"`

	// Name identifies this deployment. It prefixes container, volume and
	// network names and namespaces the keys in Caddy's storage, so two
	// deployments on one engine never see each other's servers. Lower-case
	// letters, digits and dashes. Default: "hubgate".
	Name string `json:"name,omitempty"`

	// Docker configures the Docker spawner.
	Docker *DockerConfig `json:"docker,omitempty"`

	// SessionTTL is how long a login lasts. Default: 24h.
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`

	// StartTimeout bounds a server's start, from the create call to the
	// app answering on its port. A start that takes longer is stopped and
	// reported to the user. Default: 2m.
	StartTimeout caddy.Duration `json:"start_timeout,omitempty"`

	// StartWait is how long a request for a server that is starting waits
	// before it is answered with a progress page (browsers) or a 503 with
	// Retry-After (other clients). Servers that start faster than this are
	// served directly on the first request. Default: 3s.
	StartWait caddy.Duration `json:"start_wait,omitempty"`

	// RouteCacheSize is the number of user servers whose address is kept
	// in memory; a request for a cached server makes no engine API call.
	// Default: 10000.
	RouteCacheSize int `json:"route_cache_size,omitempty"`

	// MaxIdleConnsPerHost is the number of idle keep-alive connections
	// kept to each user server. Caddy's reverse_proxy default of 32 costs
	// throughput under many concurrent connections. Default: 128.
	MaxIdleConnsPerHost int `json:"max_idle_conns_per_host,omitempty"`

	// LoginFailuresPerUser is how many failed logins for one user name are
	// allowed within LoginWindow before further attempts are refused with
	// 429 until the window ends. Default: 5.
	LoginFailuresPerUser int `json:"login_failures_per_user,omitempty"`

	// LoginFailuresPerIP is the same limit per client IP. Default: 20.
	LoginFailuresPerIP int `json:"login_failures_per_ip,omitempty"`

	// LoginWindow is the window of the failed-login limits. Default: 15m.
	LoginWindow caddy.Duration `json:"login_window,omitempty"`

	// MaxConcurrentStarts limits how many servers start at the same time.
	// Further starts wait in arrival order, and their progress page shows
	// their place in line. 0 means no limit. Default: 10.
	MaxConcurrentStarts *int `json:"max_concurrent_starts,omitempty"`

	// CullInterval is how often running servers are checked against their
	// team's idle_timeout and max_age. Default: 1m.
	CullInterval caddy.Duration `json:"cull_interval,omitempty"`

	// OIDC lists the OpenID Connect providers people may log in with.
	// Several may be configured; the login page offers each.
	OIDC []*OIDCConfig `json:"oidc,omitempty"`

	// GitHub enables login with GitHub; org and team memberships become
	// policy groups and are re-checked on an interval.
	GitHub *GitHubConfig `json:"github,omitempty"`

	// Local configures the local accounts of the policy file. They are
	// offered unless disabled here.
	Local *LocalConfig `json:"local,omitempty"`

	// Assertion, if set, adds a signed identity assertion (an ES256 JWT)
	// to every request proxied to a user's server.
	Assertion *AssertionConfig `json:"assertion,omitempty"`

	logger  *zap.Logger
	audit   *zap.Logger
	ctx     caddy.Context
	watcher *policies.Watcher
	codec   *session.Codec
	hub     *hub
	hubKey  string
	proxy   *reverseproxy.Handler
	pages   *pages
	// sessions caches opened session cookies by their sealed value.
	sessions *lru.Cache[string, session.Session]
	auth     *authRuntime
}

// DockerConfig configures the Docker spawner.
type DockerConfig struct {
	// Host is the engine address, as DOCKER_HOST takes it. Default: the
	// environment's DOCKER_HOST, else the local socket.
	Host string `json:"host,omitempty"`

	// Network is the bridge network user containers are attached to; it
	// is created when missing. Containers are never published on host
	// ports. Default: the deployment name.
	Network string `json:"network,omitempty"`

	// Isolate disables traffic between containers on the network (the
	// gateway on the host still reaches them). Set it to false only when
	// the gateway itself runs in a container on that network.
	// Default: true.
	Isolate *bool `json:"isolate,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.hubgate",
		New: func() caddy.Module { return new(Handler) },
	}
}

func (h *Handler) applyDefaults() {
	if h.Name == "" {
		h.Name = defaultName
	}
	if h.Docker == nil {
		h.Docker = new(DockerConfig)
	}
	if h.Docker.Network == "" {
		h.Docker.Network = h.Name
	}
	if h.Docker.Isolate == nil {
		t := true
		h.Docker.Isolate = &t
	}
	if h.SessionTTL == 0 {
		h.SessionTTL = caddy.Duration(defaultSessionTTL)
	}
	if h.StartTimeout == 0 {
		h.StartTimeout = caddy.Duration(defaultStartTimeout)
	}
	if h.StartWait == 0 {
		h.StartWait = caddy.Duration(defaultStartWait)
	}
	if h.RouteCacheSize == 0 {
		h.RouteCacheSize = defaultRouteCacheSize
	}
	if h.MaxIdleConnsPerHost == 0 {
		h.MaxIdleConnsPerHost = defaultMaxIdleConnsPerHost
	}
	if h.LoginFailuresPerUser == 0 {
		h.LoginFailuresPerUser = defaultLoginFailuresUser
	}
	if h.LoginFailuresPerIP == 0 {
		h.LoginFailuresPerIP = defaultLoginFailuresIP
	}
	if h.LoginWindow == 0 {
		h.LoginWindow = caddy.Duration(defaultLoginWindow)
	}
	if h.MaxConcurrentStarts == nil {
		n := defaultMaxConcurrentStarts
		h.MaxConcurrentStarts = &n
	}
	if h.CullInterval == 0 {
		h.CullInterval = caddy.Duration(defaultCullInterval)
	}
	h.applyAuthDefaults()
}

// Provision sets the handler up: it loads the policy (a bad policy fails
// the config load), the keys from Caddy's storage, the shared runtime that
// survives config reloads, and the embedded reverse proxy. It makes no
// blocking engine call.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.ctx = ctx
	h.logger = ctx.Logger()
	h.audit = caddy.Log().Named("hubgate.audit")
	h.applyDefaults()
	if err := h.Validate(); err != nil {
		return err
	}

	w, err := policies.NewWatcher(h.logger.Named("policy"), h.Policy, h.onPolicyReload)
	if err != nil {
		return fmt.Errorf("load policy: %w", err)
	}
	h.watcher = w

	key, err := session.LoadOrCreateKey(ctx, ctx.Storage(), "hubgate/"+h.Name+"/master.key")
	if err != nil {
		return fmt.Errorf("load session key: %w", err)
	}
	if h.codec, err = session.NewCodec(key); err != nil {
		return err
	}
	if h.sessions, err = lru.New[string, session.Session](sessionCacheSize); err != nil {
		return err
	}

	h.hubKey = h.hubPoolKey()
	val, _, err := hubs.LoadOrNew(h.hubKey, func() (caddy.Destructor, error) {
		return newHub(h)
	})
	if err != nil {
		return fmt.Errorf("start hub runtime: %w", err)
	}
	h.hub = val.(*hub)
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	h.hub.queue.setLimit(*h.MaxConcurrentStarts)
	h.hub.limiter.configure(h.LoginFailuresPerUser, h.LoginFailuresPerIP, time.Duration(h.LoginWindow))
	h.hub.cullEvery.Store(int64(h.CullInterval))

	if err := h.provisionProxy(ctx); err != nil {
		return err
	}
	if h.pages, err = loadPages(); err != nil {
		return err
	}
	if err := h.provisionAuth(ctx); err != nil {
		return err
	}
	// Watch last: reload callbacks use everything above.
	if err := w.Start(ctx); err != nil {
		return fmt.Errorf("watch policy: %w", err)
	}
	return nil
}

func (h *Handler) hubPoolKey() string {
	return fmt.Sprintf("%s|%s|%s|%t|%d", h.Name, h.Docker.Host, h.Docker.Network, *h.Docker.Isolate, h.RouteCacheSize)
}

func (h *Handler) onPolicyReload(res policies.ReloadResult) {
	fields := []zap.Field{zap.Bool("ok", res.OK), zap.Strings("files", res.Files)}
	if res.OK {
		fields = append(fields, zap.String("summary", res.Summary))
	} else {
		fields = append(fields, zap.Error(res.Err))
	}
	result := "ok"
	if !res.OK {
		result = "error"
	}
	metrics.reloads.WithLabelValues(result).Inc()
	if res.OK && h.hub != nil {
		// Zero trust holds for open websockets too: those of users the new
		// policy no longer allows are closed now.
		pol := h.watcher.Current()
		if n := h.hub.streams.closeDenied(pol.Allowed); n > 0 {
			fields = append(fields, zap.Int("streams_closed", n))
		}
	}
	h.audit.Info("policy reload", fields...)
}

// Validate checks the configuration without side effects.
func (h *Handler) Validate() error {
	if len(h.Policy) == 0 {
		return errors.New("hubgate: policy is required (a file or folder)")
	}
	if !nameRE.MatchString(h.Name) {
		return fmt.Errorf("hubgate: name %q must be lower-case letters, digits and dashes, at most 31 characters", h.Name)
	}
	if h.SessionTTL < 0 || h.StartTimeout < 0 || h.StartWait < 0 || h.LoginWindow < 0 || h.CullInterval < 0 {
		return errors.New("hubgate: durations must not be negative")
	}
	if h.RouteCacheSize < 0 || h.MaxIdleConnsPerHost < 0 || h.LoginFailuresPerIP < 0 || h.LoginFailuresPerUser < 0 ||
		(h.MaxConcurrentStarts != nil && *h.MaxConcurrentStarts < 0) {
		return errors.New("hubgate: sizes and limits must not be negative")
	}
	return h.validateAuth()
}

// Cleanup stops the policy watcher and releases this config's hold on the
// shared runtime. Running containers are never stopped by a reload or a
// shutdown. It is safe to call more than once.
func (h *Handler) Cleanup() error {
	if h.watcher != nil {
		_ = h.watcher.Close()
		h.watcher = nil
	}
	if h.proxy != nil {
		_ = h.proxy.Cleanup()
		h.proxy = nil
	}
	if h.hub != nil {
		h.hub = nil
		if _, err := hubs.Delete(h.hubKey); err != nil {
			return fmt.Errorf("release hub runtime: %w", err)
		}
	}
	return nil
}

// ServeHTTP routes the request; see routes.go.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return h.route(w, r, next)
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
