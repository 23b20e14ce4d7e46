// Package web is hubgate's site: one route table that says which paths are
// public, which need a session and which need an admin; the /user/ handler
// (authenticate, authorize, resolve, proxy); the home page, the admin page
// and the JSON API. Every refusal is answered through pages.Problem, as a
// page or as JSON.
package web

import (
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/assertion"
	"github.com/hubgate/hubgate/caddymodule/backup"
	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/login"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/serverhost"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/caddymodule/shares"
	"github.com/hubgate/hubgate/caddymodule/tokens"
	"github.com/hubgate/hubgate/policies"
)

// DefaultStartWait is how long a request waits for a start before the
// progress page (or a 503) answers it.
const DefaultStartWait = 3 * time.Second

// Options are the parts the site is made of.
type Options struct {
	Login  *login.Authenticator
	Hub    *hub.Runtime
	Proxy  *hub.Proxy
	Pages  *pages.Renderer
	Policy func() *policies.Policy
	// PolicyStatus is the last policy reload's result.
	PolicyStatus func() policies.ReloadResult
	// Signer holds the deployment's assertion key (published as the
	// JWKS); nil when neither the assertion nor the audit log is on.
	Signer *assertion.Signer
	// SignAssertions sends the signed identity assertion upstream.
	SignAssertions bool
	// LastDiff is the last policy reload's access changes.
	LastDiff func() []string
	Logger   *zap.Logger
	Audit    *zap.Logger
	// StartWait: see DefaultStartWait.
	StartWait time.Duration
	// ServerHost, if set, serves each server on a host of its own (see
	// serverhost.go); ServerCookieTTL is its cookies' lifetime.
	ServerHost      *serverhost.Template
	ServerCookieTTL time.Duration
	// Shares holds shares and admin access grants (with ServerHost);
	// SharesEnabled lets owners share (admin access grants need only
	// ServerHost).
	Shares        *shares.Store
	SharesEnabled bool
	// GrantChanged is told of a grant revoked here, to close the
	// websockets opened under it.
	GrantChanged func(id string) int
	// Tokens keeps personal API tokens; nil: none are accepted or made.
	Tokens *tokens.Store
	// Services proxies to the policy's team services; nil: none served.
	Services *hub.ServiceProxy
	// Backup is the backup manager (backups, restores, storage quotas,
	// offboarding); nil when no backup is configured. See backup.go.
	Backup *backup.Manager

	// History is the per-user access history; nil shows empty pages.
	History HistorySource
}

// Site serves every path of the site hubgate is placed in.
type Site struct {
	o      Options
	routes []route
	hosts  *hostState
}

// access is who may use a route.
type access int

const (
	public access = iota // no session needed
	user                 // a session of a user the policy knows of
	admin                // an admin's session (or, for the API, a token)
)

type route struct {
	match  func(path string) bool
	access access
	serve  func(w http.ResponseWriter, r *http.Request, s *session.Session) error
}

func exact(paths ...string) func(string) bool {
	return func(p string) bool {
		for _, x := range paths {
			if p == x {
				return true
			}
		}
		return false
	}
}

func prefix(pre string) func(string) bool {
	return func(p string) bool { return strings.HasPrefix(p, pre) }
}

// New builds the site.
func New(o Options) *Site {
	if o.StartWait <= 0 {
		o.StartWait = DefaultStartWait
	}
	s := &Site{o: o, hosts: newHostState()}
	lg := o.Login
	s.routes = []route{
		// Public: the way in, and what load balancers and apps fetch.
		{exact("/hub/health"), public, s.serveHealth},
		{exact("/hub/login"), public, noSession(lg.ServeLogin)},
		{exact("/hub/logout"), public, noSession(lg.ServeLogout)},
		{exact("/hub/oauth_callback"), public, noSession(lg.ServeOAuthCallback)},
		{prefix("/hub/oauth_start/"), public, func(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
			return lg.ServeOAuthStart(w, r, strings.TrimPrefix(r.URL.Path, "/hub/oauth_start/"))
		}},
		{exact("/hub/.well-known/jwks.json"), public, s.serveJWKS},
		// Shares of a user's own servers (sessions, with the CSRF header).
		{prefix("/hub/api/shares"), public, s.serveSharesAPI},
		// Each user's own access history as JSON (it authenticates its
		// callers as the API does, but is not for admins only).
		{exact("/hub/api/history"), public, s.serveHistoryAPI},
		// The API authenticates its own callers (tokens or admin sessions).
		{prefix("/hub/api/"), public, s.serveAPI},
		// A user's session.
		{prefix("/user/"), user, s.serveUser},
		{prefix("/services/"), user, s.serveService},
		{exact("/", "/hub", "/hub/", "/hub/home"), user, pageOnly(s.serveHome)},
		{exact("/hub/stop"), user, pageOnly(s.serveStop)},
		{exact(authorizePath), user, pageOnly(s.serveAuthorize)},
		{exact("/hub/shares"), user, pageOnly(s.serveShares)},
		{exact("/hub/admin/access"), admin, pageOnly(s.serveAdminAccess)},
		{exact("/hub/tokens"), user, pageOnly(s.serveNewToken)},
		{exact("/hub/tokens/revoke"), user, pageOnly(s.serveRevokeToken)},
		{exact("/hub/restore"), user, pageOnly(s.serveRestore)},
		{exact("/hub/history"), user, pageOnly(s.serveHistory)},
		// Admins.
		{exact("/hub/admin"), admin, pageOnly(s.serveAdmin)},
		{exact("/hub/admin/backup"), admin, pageOnly(s.serveAdminBackup)},
	}
	return s
}

// pageOnly serves hub pages (which hold CSRF tokens) only to browser
// navigations and form posts, never to a script's fetch: a script served
// by a user's server shares the hub's origin until servers have origins
// of their own, and must not read those tokens.
func pageOnly(h func(http.ResponseWriter, *http.Request, *session.Session) error) func(http.ResponseWriter, *http.Request, *session.Session) error {
	return func(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
		if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" && mode != "navigate" {
			return pages.WriteJSON(w, http.StatusForbidden, map[string]any{"error": "hub pages open only as pages, not from scripts"})
		}
		return h(w, r, sess)
	}
}

func noSession(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request, *session.Session) error {
	return func(w http.ResponseWriter, r *http.Request, _ *session.Session) error { return h(w, r) }
}

// ServeHTTP finds the route, checks its access once, and serves it.
func (s *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	if s.o.ServerHost != nil {
		if owner, server, ok := s.o.ServerHost.Match(r.Host); ok {
			return s.serveServerHost(w, r, owner, server)
		}
	}
	for _, rt := range s.routes {
		if !rt.match(r.URL.Path) {
			continue
		}
		if rt.access == public {
			return rt.serve(w, r, nil)
		}
		if cred, ok := personalToken(r); ok && s.o.Tokens != nil && acceptsToken(r.URL.Path) {
			// A token request: the token alone says who it is (bearer.go).
			sess, r, err := s.tokenSession(w, r, cred)
			if sess == nil {
				return err
			}
			return rt.serve(w, r, sess)
		}
		sess := s.o.Login.Authenticate(r)
		if sess == nil {
			return s.needLogin(w, r)
		}
		setUserPlaceholders(r, sess)
		pol := s.o.Policy()
		if !pol.Known(sess.User, sess.Groups) {
			return s.refuse(w, r, sess, http.StatusForbidden, "Your account is not in this hub's policy. Ask an admin to add you.", "not_in_policy")
		}
		if rt.access == admin && !pol.IsAdmin(sess.User) {
			return s.refuse(w, r, sess, http.StatusForbidden, "The admin page is for admins only.", "not_admin")
		}
		return rt.serve(w, r, sess)
	}
	sess := s.o.Login.Authenticate(r)
	if sess == nil {
		return s.needLogin(w, r)
	}
	return s.o.Pages.Problem(w, r, http.StatusNotFound, s.o.Login.Frame(sess, "Not found"), "There is nothing at this address.", "", nil)
}

// setUserPlaceholders publishes the user like Caddy's authentication
// handler does, so access logs and later directives see who it was.
func setUserPlaceholders(r *http.Request, s *session.Session) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	repl.Set("http.auth.user.id", s.User)
	repl.Set("http.auth.user.provider", s.Provider)
}

// serveHealth answers load balancers: ready once the policy is loaded,
// sessions can be checked (the revocation records were read) and the
// running servers were listed; not ready again as soon as Caddy begins
// to shut down (its shutdown_delay: the load balancer stops sending new
// requests here while the ones in flight finish). The keys are loaded
// before the handler serves at all. It needs no login and shows no names.
func (s *Site) serveHealth(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
	res := s.o.PolicyStatus()
	st := s.o.Hub.Stats()
	rep := s.o.Hub.Replica()
	ready := s.o.Policy() != nil && s.o.Login.Ready() && s.o.Hub.Warmed()
	status, code := "ok", http.StatusOK
	switch {
	case shuttingDown(r):
		status, code = "shutting_down", http.StatusServiceUnavailable
	case !ready:
		status, code = "starting", http.StatusServiceUnavailable
	}
	return pages.WriteJSON(w, code, map[string]any{
		"status":           status,
		"policy_last_ok":   res.OK,
		"policy_reloaded":  res.Time,
		"routes_cached":    st.RoutesCached,
		"routes_listed":    s.o.Hub.Warmed(),
		"starts_in_flight": st.StartsInFlight,
		"replica":          rep,
	})
}

// shuttingDown reports Caddy's {http.shutting_down}: the server's
// shutdown is scheduled.
func shuttingDown(r *http.Request) bool {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return false
	}
	v, _ := repl.Get("http.shutting_down")
	b, _ := v.(bool)
	return b
}

// serveJWKS publishes the assertion's public key; it needs no login.
func (s *Site) serveJWKS(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
	if s.o.Signer == nil {
		return pages.WriteJSON(w, http.StatusNotFound, map[string]any{"error": "no identity assertion is configured"})
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return pages.WriteJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": "method not allowed"})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(s.o.Signer.JWKS())
	return err
}
