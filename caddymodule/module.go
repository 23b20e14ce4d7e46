// Package caddymodule is hubgate's Caddy glue: the http.handlers.hubgate
// module's config (config.go, config_login.go, config_kubernetes.go) and
// Caddyfile syntax (caddyfile.go), Provision wiring the parts (this file):
// the policy watcher, keys from Caddy's storage, the runtime and login state
// from their usage pools, the login side, the proxy and the site; metrics
// registration and the `caddy hubgate` commands. Requests are served by
// the web package. See ARCHITECTURE.md.
package caddymodule

import (
	"context"
	"fmt"
	"net/http"
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
	"github.com/hubgate/hubgate/caddymodule/tokens"
	"github.com/hubgate/hubgate/caddymodule/web"
	"github.com/hubgate/hubgate/internal/randid"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
	"github.com/hubgate/hubgate/spawner/docker"
	"github.com/hubgate/hubgate/spawner/kubernetes"
)

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
	var err error
	audit := caddy.Log().Named("hubgate.audit")
	if h.AuditLog != "" {
		maxSize := h.AuditLogMaxSize
		if maxSize == 0 {
			maxSize = defaultAuditLogMaxSize
		}
		// The size applies when the file is first opened; a reload that
		// changes it keeps the open writer (and its chain) as it is.
		val, _, err := auditLogs.LoadOrNew(h.AuditLog, func() (caddy.Destructor, error) {
			w, err := auditlog.Open(auditlog.Options{Path: h.AuditLog, Signer: signer.Key(), KeyID: signer.KeyID(), MaxSize: maxSize})
			return auditFile{w}, err
		})
		if err != nil {
			return fmt.Errorf("hubgate: audit log %s: %w", h.AuditLog, err)
		}
		h.auditKey = h.AuditLog
		audit = auditlog.Tee(audit, val.(auditFile).Writer)
	}
	if audit, err = h.loadHistory(audit); err != nil {
		return err
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
	if h.Egress != nil {
		if h.egress, err = h.newEgress(codec); err != nil {
			return err
		}
	}
	h.runtime.Configure(hub.Config{
		RouteCacheSize:      h.RouteCacheSize,
		MaxConcurrentStarts: *h.MaxConcurrentStarts,
		CullInterval:        time.Duration(h.CullInterval),
		StartTimeout:        time.Duration(h.StartTimeout),
		EgressEnv:           h.egressEnv(),
	})
	h.runtime.Share(hub.Shared{
		Storage: ctx.Storage(), Prefix: prefix, Replica: replicaID,
		ActivityFlush: time.Duration(h.ActivityFlush), LeaseTTL: time.Duration(h.CullLease),
	})
	h.stateKey = h.Name
	val, _, err := loginStates.LoadOrNew(h.stateKey, func() (caddy.Destructor, error) {
		return login.NewState(ctx.Storage(), prefix), nil
	})
	if err != nil {
		return fmt.Errorf("login state: %w", err)
	}
	h.state = val.(*login.State)
	h.state.Share(ctx.Storage(), replicaID)

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
	proxyConfig := hub.ProxyConfig{MaxIdleConnsPerHost: h.MaxIdleConnsPerHost, AssertionHeader: assertionHeader, StripHeaders: h.StripHeaders}
	if h.proxy, err = hub.NewProxy(ctx, h.runtime, proxyConfig); err != nil {
		return err
	}
	if h.hosts, err = h.provisionServerHosts(ctx, prefix, streams, w.Current, audit); err != nil {
		return err
	}
	if h.services, err = hub.NewServiceProxy(ctx, h.runtime, proxyConfig); err != nil {
		return err
	}
	personalTokens := tokens.New(ctx.Storage(), prefix, 0)
	if err := h.provisionBackup(ctx, prefix, audit, h.offboardRevokers(personalTokens)); err != nil {
		return err
	}
	siteOpts := web.Options{
		Login: h.login, Hub: h.runtime, Proxy: h.proxy, Pages: pg,
		Policy: w.Current, PolicyStatus: w.LastResult, Signer: signer, SignAssertions: h.Assertion != nil,
		LastDiff: func() []string { d, _ := h.diffs.last.Load().([]string); return d },
		History:  h.history,
		Logger:   h.logger, Audit: audit, StartWait: time.Duration(h.StartWait),
		Backup: h.backups,
		Tokens: personalTokens, Services: h.services,
	}
	h.hosts.siteOptions(&siteOpts, h, streams)
	h.site = web.New(siteOpts)
	go closeRevokedTokenStreams(ctx, h.site, personalTokens.CacheTTL(), audit)
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	if h.egress != nil {
		if err := h.egress.start(ctx, audit); err != nil {
			return err
		}
	}
	h.warnUnenforcedEgress(w.Current())
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

// replicaID names this process among the replicas of a deployment that
// share Caddy's storage (activity records, the cull lease, login failure
// counts). It is new on every process start.
var replicaID = randid.New(9)

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
	key := fmt.Sprintf("%s|docker|%s|%s|%t|%t", h.Name, h.Docker.Host, h.Docker.Network, *h.Docker.Isolate, h.Egress != nil)
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
				Host:     h.Docker.Host,
				Network:  h.Docker.Network,
				Isolate:  *h.Docker.Isolate,
				Internal: h.Egress != nil,
				Prefix:   h.Name,
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
			h.warnUnenforcedEgress(cur)
		}
		if res.OK && h.runtime != nil && h.watcher != nil {
			cur := h.watcher.Current()
			n := h.runtime.Streams().CloseDenied(cur.Reaches)
			// A guest no longer in the policy loses what a share gave.
			n += h.runtime.Streams().CloseIf(func(st *hub.Stream) bool { return st.Owner != "" && !cur.Known(st.User, st.Groups) })
			if n > 0 {
				fields = append(fields, zap.Int("streams_closed", n))
			}
		}
		audit.Info("policy reload", fields...)
	}
}

// Cleanup stops the policy watcher and the login loops and releases this
// config's hold on the shared runtime and login state. Running containers
// are never stopped by a reload or a shutdown. It is safe to call more
// than once.
func (h *Handler) Cleanup() error {
	if h.hosts != nil {
		h.hosts.close(h.Name)
		h.hosts = nil
	}
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
	if h.services != nil {
		_ = h.services.Cleanup()
		h.services = nil
	}
	if h.egress != nil {
		if err := h.egress.cleanup(); err != nil {
			return fmt.Errorf("release egress proxy: %w", err)
		}
		h.egress = nil
	}
	if h.auditKey != "" {
		if _, err := auditLogs.Delete(h.auditKey); err != nil {
			return fmt.Errorf("release audit log: %w", err)
		}
		h.auditKey = ""
	}
	if err := h.releaseHistory(); err != nil {
		return err
	}
	if h.state != nil {
		h.state = nil
		if _, err := loginStates.Delete(h.stateKey); err != nil {
			return fmt.Errorf("release login state: %w", err)
		}
	}
	if h.backups != nil {
		h.backups = nil
		if _, err := backupManagers.Delete(h.Name); err != nil {
			return fmt.Errorf("release backup manager: %w", err)
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
