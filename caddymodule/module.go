// Package caddymodule holds hubgate's Caddy modules: the HTTP handler that
// logs people in, checks the policy on every request, starts or finds each
// user's container and proxies to it through Caddy's own reverse proxy.
package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/assertion"
	auditlog "github.com/hubgate/hubgate/caddymodule/audit"
	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/idp"
	"github.com/hubgate/hubgate/caddymodule/login"
	"github.com/hubgate/hubgate/caddymodule/pages"
	_ "github.com/hubgate/hubgate/caddymodule/redisstorage" // the storage module for replicas without a shared folder
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/caddymodule/web"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
	"github.com/hubgate/hubgate/spawner/docker"
	"github.com/hubgate/hubgate/spawner/kubernetes"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults for the handler's optional settings.
const (
	defaultName                = "hubgate"
	defaultSessionTTL          = login.DefaultSessionTTL
	defaultStartTimeout        = hub.DefaultStartTimeout
	defaultStartWait           = web.DefaultStartWait
	defaultRouteCacheSize      = hub.DefaultRouteCacheSize
	defaultMaxIdleConnsPerHost = 128
	defaultLoginFailuresUser   = login.DefaultFailuresPerUser
	defaultLoginFailuresIP     = login.DefaultFailuresPerIP
	defaultLoginWindow         = login.DefaultFailureWindow
	defaultMaxConcurrentStarts = hub.DefaultMaxConcurrentStarts
	defaultCullInterval        = hub.DefaultCullInterval
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

	// PublicURL is the hub's origin as browsers reach it, such as
	// "https://hub.example.org". Set it when hubgate runs behind a
	// TLS-terminating load balancer or ingress, or under a catch-all site
	// address: it is then used for identity-provider redirect URIs, the
	// post-logout redirect, the cross-origin checks and the identity
	// assertion's issuer, instead of the request's own scheme and Host
	// (which a client chooses). Scheme and host (and port) only.
	PublicURL string `json:"public_url,omitempty"`

	// StripHeaders names request headers, beyond hubgate's rule, that
	// never reach a user's app (the rule already strips every header that
	// claims an identity and forwarding headers the gateway does not set;
	// see SECURITY.md). Case and '_' for '-' do not matter.
	StripHeaders []string `json:"strip_headers,omitempty"`

	// AuditLog, if set, is the file the audit trail is also written to
	// as a tamper-evident log: each record carries the hash of the one
	// before, and a checkpoint signed with the deployment's assertion key
	// (published at /hub/.well-known/jwks.json) is written every 1000
	// records and every minute. `caddy hubgate verify-audit` checks it.
	// Rotated at 100 MiB.
	AuditLog string `json:"audit_log,omitempty"`

	// Docker configures the Docker spawner (the default backend).
	Docker *DockerConfig `json:"docker,omitempty"`

	// Kubernetes, if set, runs user servers as pods on a Kubernetes
	// cluster instead of Docker containers: one pod per user and server,
	// one PersistentVolumeClaim per user. See deploy/kubernetes.
	Kubernetes *KubernetesConfig `json:"kubernetes,omitempty"`

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

	// AutoLogin sends /hub/login straight to the identity provider when
	// exactly one external provider is configured and local accounts are
	// off, keeping where the user was going; false shows the login page
	// with its one button instead. Default: true.
	AutoLogin *bool `json:"auto_login,omitempty"`

	// Assertion, if set, adds a signed identity assertion (an ES256 JWT)
	// to every request proxied to a user's server.
	Assertion *AssertionConfig `json:"assertion,omitempty"`

	logger   *zap.Logger
	diffs    *reloadDiffs
	auditKey string
	watcher  *policies.Watcher
	runtime  *hub.Runtime
	hubKey   string
	state    *login.State
	stateKey string
	login    *login.Authenticator
	proxy    *hub.Proxy
	site     *web.Site
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

// Provision wires the parts together: the policy (a bad policy fails the
// config load), the keys from Caddy's storage, the runtime and login state
// that survive reloads (found in their pools, then given this config's
// tunables), the login side, the proxy and the site. It makes no blocking
// engine call.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.applyDefaults()
	if err := h.Validate(); err != nil {
		return err
	}
	prefix := session.StoragePrefix(h.Name)
	// The assertion key signs assertions (if on) and the audit log's
	// checkpoints (if on); the JWKS publishes it for either.
	var signer *assertion.Signer
	if h.Assertion != nil || h.AuditLog != "" {
		ttl := defaultAssertionTTL
		if h.Assertion != nil {
			ttl = time.Duration(h.Assertion.TTL)
		}
		var err error
		if signer, err = assertion.Load(ctx, ctx.Storage(), prefix+"/assertion.key", ttl); err != nil {
			return fmt.Errorf("hubgate: assertion key: %w", err)
		}
	}
	h.diffs = new(reloadDiffs)
	audit := caddy.Log().Named("hubgate.audit")
	if h.AuditLog != "" {
		val, _, err := auditLogs.LoadOrNew(h.AuditLog, func() (caddy.Destructor, error) {
			w, err := auditlog.Open(auditlog.Options{Path: h.AuditLog, Signer: signer.Key(), KeyID: signer.KeyID(), MaxSize: 100 << 20})
			return auditFile{w}, err
		})
		if err != nil {
			return fmt.Errorf("hubgate: audit log %s: %w", h.AuditLog, err)
		}
		h.auditKey = h.AuditLog
		audit = auditlog.Tee(audit, val.(auditFile).Writer)
	}
	w, err := policies.NewWatcher(h.logger.Named("policy"), h.Policy, h.onPolicyReload(audit))
	if err != nil {
		return fmt.Errorf("load policy: %w", err)
	}
	h.watcher = w
	h.diffs.prev.Store(w.Current())

	key, err := session.LoadOrCreateKey(ctx, ctx.Storage(), prefix+"/master.key")
	if err != nil {
		return fmt.Errorf("load session key: %w", err)
	}
	codec, err := session.NewCodec(key)
	if err != nil {
		return err
	}

	if h.runtime, h.hubKey, err = h.loadRuntime(codec, audit); err != nil {
		return err
	}
	h.runtime.Configure(hub.Config{
		RouteCacheSize:      h.RouteCacheSize,
		MaxConcurrentStarts: *h.MaxConcurrentStarts,
		CullInterval:        time.Duration(h.CullInterval),
		StartTimeout:        time.Duration(h.StartTimeout),
	})
	h.stateKey = h.Name
	val, _, err := loginStates.LoadOrNew(h.stateKey, func() (caddy.Destructor, error) {
		return login.NewState(ctx.Storage(), prefix), nil
	})
	if err != nil {
		return fmt.Errorf("login state: %w", err)
	}
	h.state = val.(*login.State)
	h.state.SetStorage(ctx.Storage())

	providers, err := h.buildProviders()
	if err != nil {
		return err
	}
	pg, err := pages.New()
	if err != nil {
		return err
	}
	streams := h.runtime.Streams()
	h.login, err = login.New(login.Config{
		PublicURL:       strings.TrimSuffix(h.PublicURL, "/"),
		SessionTTL:      time.Duration(h.SessionTTL),
		Local:           h.Local == nil || h.Local.Enabled == nil || *h.Local.Enabled,
		AutoLogin:       h.AutoLogin == nil || *h.AutoLogin,
		Providers:       providers,
		RecheckInterval: h.recheckInterval(),
		FailuresPerUser: h.LoginFailuresPerUser,
		FailuresPerIP:   h.LoginFailuresPerIP,
		FailureWindow:   time.Duration(h.LoginWindow),
	}, login.Options{
		Codec:        codec,
		Store:        &idp.Store{Storage: ctx.Storage(), Prefix: prefix, Sealer: codec},
		State:        h.state,
		Policy:       w.Current,
		Pages:        pg,
		Logger:       h.logger.Named("login"),
		Audit:        audit,
		Denied:       web.Denied,
		Seen:         h.runtime.MarkSeen,
		SessionEnded: streams.CloseSession,
		AccessLost:   streams.CloseUser,
	})
	if err != nil {
		return err
	}
	assertionHeader := ""
	if h.Assertion != nil {
		assertionHeader = h.Assertion.Header
	}
	if h.proxy, err = hub.NewProxy(ctx, h.runtime, hub.ProxyConfig{MaxIdleConnsPerHost: h.MaxIdleConnsPerHost, AssertionHeader: assertionHeader, StripHeaders: h.StripHeaders}); err != nil {
		return err
	}
	h.site = web.New(web.Options{
		Login: h.login, Hub: h.runtime, Proxy: h.proxy, Pages: pg,
		Policy: w.Current, PolicyStatus: w.LastResult, Signer: signer, SignAssertions: h.Assertion != nil,
		LastDiff: func() []string { d, _ := h.diffs.last.Load().([]string); return d },
		Logger:   h.logger, Audit: audit, StartWait: time.Duration(h.StartWait),
	})
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	// Watch last: reload callbacks use everything above.
	if err := w.Start(ctx); err != nil {
		return fmt.Errorf("watch policy: %w", err)
	}
	return nil
}

// runtimes holds the hub runtime of each deployment across config reloads,
// keyed by identity only (the deployment and its engine), as Caddy's
// reverse proxy keys its upstream hosts: on reload Caddy provisions the
// new config (LoadOrNew finds the running runtime) before it cleans up the
// old one (Delete drops a reference), so nothing in flight is lost, and a
// changed tunable is applied with Configure instead of making a second
// runtime with a second engine client.
var runtimes = caddy.NewUsagePool()

// loginStates holds each deployment's login state (failure counters,
// revocations, used OAuth states, GitHub re-checks) the same way, keyed by
// the deployment's name.
var loginStates = caddy.NewUsagePool()

// reloadDiffs keeps, per config, the policy before the last reload (for
// its diff) and that diff's lines.
type reloadDiffs struct {
	prev atomic.Pointer[policies.Policy]
	last atomic.Value // []string
}

// auditLogs holds the open tamper-evident audit files across reloads,
// keyed by path, so a reload neither reopens a file nor breaks its chain.
var auditLogs = caddy.NewUsagePool()

// auditFile closes its writer (a final checkpoint) when the last config
// using it is unloaded.
type auditFile struct{ *auditlog.Writer }

// Destruct implements caddy.Destructor.
func (f auditFile) Destruct() error { return f.Close() }

// loadRuntime finds or makes the deployment's runtime, with the Docker or
// the Kubernetes spawner. Its key is the deployment and the engine it
// talks to, nothing else: a tunable never makes a second runtime.
func (h *Handler) loadRuntime(tokens hub.TokenDeriver, audit *zap.Logger) (*hub.Runtime, string, error) {
	key := fmt.Sprintf("%s|docker|%s|%s|%t", h.Name, h.Docker.Host, h.Docker.Network, *h.Docker.Isolate)
	if k := h.Kubernetes; k != nil {
		key = fmt.Sprintf("%s|kubernetes|%s|%s", h.Name, k.Kubeconfig, k.Namespace)
	}
	val, _, err := runtimes.LoadOrNew(key, func() (caddy.Destructor, error) {
		logger := caddy.Log().Named("hubgate.hub")
		var sp spawner.Spawner
		var err error
		if h.Kubernetes != nil {
			// The informer lives as long as the runtime, not this config:
			// Destruct closes it.
			sp, err = kubernetes.New(context.Background(), h.Kubernetes.config(h.Name), logger.Named("kubernetes"))
			if err != nil {
				return nil, fmt.Errorf("kubernetes spawner: %w", err)
			}
		} else {
			sp, err = docker.New(docker.Config{
				Host:    h.Docker.Host,
				Network: h.Docker.Network,
				Isolate: *h.Docker.Isolate,
				Prefix:  h.Name,
			}, logger.Named("docker"))
			if err != nil {
				return nil, fmt.Errorf("docker spawner: %w", err)
			}
		}
		return hub.New(hub.Options{Spawner: sp, Tokens: tokens, Logger: logger, Audit: audit}, hub.Config{})
	})
	if err != nil {
		return nil, "", fmt.Errorf("start hub runtime: %w", err)
	}
	return val.(*hub.Runtime), key, nil
}

func (h *Handler) recheckInterval() time.Duration {
	if h.GitHub != nil {
		return time.Duration(h.GitHub.RecheckInterval)
	}
	return login.DefaultRecheckInterval
}

// onPolicyReload audits each reload; after a good one, the websockets of
// users the new policy no longer allows are closed (zero trust holds for
// open connections too).
func (h *Handler) onPolicyReload(audit *zap.Logger) func(policies.ReloadResult) {
	return func(res policies.ReloadResult) {
		fields := []zap.Field{zap.Bool("ok", res.OK), zap.Strings("files", res.Files)}
		result := "ok"
		if res.OK {
			fields = append(fields, zap.String("summary", res.Summary))
		} else {
			result = "error"
			fields = append(fields, zap.Error(res.Err))
		}
		reloads.WithLabelValues(result).Inc()
		if res.OK && h.watcher != nil {
			// Who gains or loses what: one audit record per reload, and
			// the admin page shows the last one.
			cur := h.watcher.Current()
			lines := policies.Diff(h.diffs.prev.Swap(cur), cur).Lines()
			h.diffs.last.Store(lines)
			fields = append(fields, zap.Strings("access_changes", lines))
		}
		if res.OK && h.runtime != nil && h.watcher != nil {
			if n := h.runtime.Streams().CloseDenied(h.watcher.Current().Allowed); n > 0 {
				fields = append(fields, zap.Int("streams_closed", n))
			}
		}
		audit.Info("policy reload", fields...)
	}
}

// Validate checks the configuration without side effects.
func (h *Handler) Validate() error {
	if len(h.Policy) == 0 {
		return errors.New("hubgate: policy is required (a file or folder)")
	}
	if !nameRE.MatchString(h.Name) {
		return fmt.Errorf("hubgate: name %q must be lower-case letters, digits and dashes, at most 31 characters", h.Name)
	}
	if h.Kubernetes != nil {
		if err := h.Kubernetes.validate(); err != nil {
			return err
		}
	}
	if h.PublicURL != "" {
		u, err := url.Parse(h.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
			strings.TrimSuffix(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("hubgate: public_url %q must be an origin such as https://hub.example.org (scheme and host, no path)", h.PublicURL)
		}
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

// Cleanup stops the policy watcher and the login loops and releases this
// config's hold on the shared runtime and login state. Running containers
// are never stopped by a reload or a shutdown. It is safe to call more
// than once.
func (h *Handler) Cleanup() error {
	if h.watcher != nil {
		_ = h.watcher.Close()
		h.watcher = nil
	}
	if h.login != nil {
		h.login.Close()
		h.login = nil
	}
	if h.proxy != nil {
		_ = h.proxy.Cleanup()
		h.proxy = nil
	}
	if h.auditKey != "" {
		if _, err := auditLogs.Delete(h.auditKey); err != nil {
			return fmt.Errorf("release audit log: %w", err)
		}
		h.auditKey = ""
	}
	if h.state != nil {
		h.state = nil
		if _, err := loginStates.Delete(h.stateKey); err != nil {
			return fmt.Errorf("release login state: %w", err)
		}
	}
	if h.runtime != nil {
		h.runtime = nil
		if _, err := runtimes.Delete(h.hubKey); err != nil {
			return fmt.Errorf("release hub runtime: %w", err)
		}
	}
	return nil
}

// ServeHTTP serves the site; see web.Site.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	return h.site.ServeHTTP(w, r)
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
