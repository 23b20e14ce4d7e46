package caddymodule

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/backup"
	"github.com/hubgate/hubgate/caddymodule/history"
	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/login"
	_ "github.com/hubgate/hubgate/caddymodule/redisstorage" // the storage module for replicas without a shared folder
	"github.com/hubgate/hubgate/caddymodule/web"
	"github.com/hubgate/hubgate/policies"
)

// This file holds the handler's configuration: its JSON fields (the
// public module docs), defaults and validation.

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
	defaultAuditLogMaxSize     = 100 << 20
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
	// Rotated at AuditLogMaxSize.
	AuditLog string `json:"audit_log,omitempty"`

	// AuditLogMaxSize is the size in bytes at which the audit log is
	// rotated: the file is renamed with the time (audit.log becomes
	// audit-20261201T203000.000Z.log) and a new one continues the same
	// chain, so `verify-audit` checks the rotated files and the current
	// one together. In the Caddyfile it takes units (10MiB). Default:
	// 100 MiB.
	AuditLogMaxSize int64 `json:"audit_log_max_size,omitempty"`

	// Docker configures the Docker spawner (the default backend).
	Docker *DockerConfig `json:"docker,omitempty"`

	// Egress, if set, confines user containers to a network with no route
	// out and runs the egress proxy, their only way out, which allows
	// each container only its user's teams' egress: hosts. See
	// EgressConfig.
	Egress *EgressConfig `json:"egress,omitempty"`

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

	// ActivityFlush is how often, at most, this replica writes the last
	// activity it proxied per server to Caddy's storage, where every
	// replica (and the culler, whichever replica holds the cull lease)
	// reads it each cull_interval. Activity reaches the culler within
	// activity_flush + cull_interval, so idle timeouts should be well
	// above that; a replica killed with SIGKILL loses at most this much.
	// Default: 30s.
	ActivityFlush caddy.Duration `json:"activity_flush,omitempty"`

	// CullLease is how long the cull lease lasts unrenewed. One replica
	// at a time holds it and stops idle servers; it renews the lease
	// every third of this, and when it dies another replica takes over
	// within cull_lease + cull_lease/3 (at once when it shuts down
	// cleanly). Replicas' clocks must agree to well within this.
	// Default: 30s.
	CullLease caddy.Duration `json:"cull_lease,omitempty"`

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

	// ServerHost, if set, serves each server on a host of its own, such
	// as "{server}--{user}.hub.example.org" ({user} and {server} escaped
	// as Kubernetes names are, so every host names one server): each
	// server is then its own origin, gets its own host-only cookie
	// through a redirect handshake with the hub, and /user/{name}/{server}/
	// on the hub redirects there. Needs public_url (the hub's origin),
	// DNS for the names and a certificate for them: a wildcard
	// certificate for "*.hub.example.org", or on-demand TLS with the
	// `tls.permission.hubgate` module (it allows only the hub's host and
	// the hosts of servers the policy knows). See serverhost_config.go.
	ServerHost string `json:"server_host,omitempty"`

	// ServerCookieTTL is how long a server host's cookie lasts before the
	// handshake with the hub is made again (it is renewed while in use,
	// and never outlives the hub session). Default: 1h.
	ServerCookieTTL caddy.Duration `json:"server_cookie_ttl,omitempty"`

	// Shares lets owners share their servers with named users or a team
	// from the home page or /hub/api/shares. Needs server_host: on the
	// hub's shared origin a shared server's pages could act as every
	// visitor towards the hub and the visitor's own servers.
	Shares bool `json:"shares,omitempty"`

	// Backup, if set, backs every home up with restic, measures homes for
	// the policy's storage quotas and offboards users per the policy's
	// retention; see BackupConfig.
	Backup *BackupConfig `json:"backup,omitempty"`

	logger   *zap.Logger
	egress   *egressProxy
	diffs    *reloadDiffs
	auditKey string
	watcher  *policies.Watcher
	runtime  *hub.Runtime
	hubKey   string
	state    *login.State
	stateKey string
	login    *login.Authenticator
	proxy    *hub.Proxy
	services *hub.ServiceProxy
	site     *web.Site
	hosts    *serverHosts
	backups  *backup.Manager

	// historyKey is set while this config holds the history index.
	historyKey string
	history    *history.Index
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
	if h.Egress != nil {
		h.Egress.applyDefaults()
	}
	if h.ActivityFlush == 0 {
		h.ActivityFlush = caddy.Duration(hub.DefaultActivityFlush)
	}
	if h.CullLease == 0 {
		h.CullLease = caddy.Duration(hub.DefaultLeaseTTL)
	}
	h.applyAuthDefaults()
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
	if h.Egress != nil {
		if err := h.Egress.validate(h.Kubernetes != nil); err != nil {
			return err
		}
	}
	if h.Backup != nil {
		if err := h.Backup.validate(); err != nil {
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
	if h.SessionTTL < 0 || h.StartTimeout < 0 || h.StartWait < 0 || h.LoginWindow < 0 || h.CullInterval < 0 ||
		h.ActivityFlush < 0 || h.CullLease < 0 {
		return errors.New("hubgate: durations must not be negative")
	}
	if h.AuditLogMaxSize < 0 {
		return errors.New("hubgate: audit_log_max_size must not be negative")
	}
	if h.RouteCacheSize < 0 || h.MaxIdleConnsPerHost < 0 || h.LoginFailuresPerIP < 0 || h.LoginFailuresPerUser < 0 ||
		(h.MaxConcurrentStarts != nil && *h.MaxConcurrentStarts < 0) {
		return errors.New("hubgate: sizes and limits must not be negative")
	}
	if err := h.validateServerHost(); err != nil {
		return err
	}
	return h.validateAuth()
}
