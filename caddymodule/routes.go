package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/session"
)

// route dispatches a request by path. Every path but the login, logout
// and health endpoints needs a valid session.
func (h *Handler) route(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/user/"):
		return h.serveUser(w, r)
	case p == "/hub/health":
		return h.serveHealth(w, r)
	case p == "/hub/login":
		return h.serveLogin(w, r)
	case p == "/hub/logout":
		return h.serveLogout(w, r)
	case p == "/hub/oauth_callback":
		return h.serveOAuthCallback(w, r)
	case strings.HasPrefix(p, "/hub/oauth_start/"):
		return h.serveOAuthStart(w, r, strings.TrimPrefix(p, "/hub/oauth_start/"))
	case p == "/hub/.well-known/jwks.json":
		return h.serveJWKS(w, r)
	case p == "/hub/admin":
		return h.serveAdmin(w, r)
	case strings.HasPrefix(p, "/hub/api/"):
		return h.serveAPI(w, r)
	case p == "/hub/stop":
		return h.serveStop(w, r)
	case p == "/" || p == "/hub" || p == "/hub/" || p == "/hub/home":
		return h.serveHome(w, r)
	default:
		s := h.currentSession(r)
		if s == nil {
			return h.needLogin(w, r)
		}
		return h.pages.render(w, http.StatusNotFound, "error", pageData{
			Title: "Not found", User: s.User, CSRF: h.csrfToken(s),
			Message: "There is nothing at this address.",
		})
	}
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

// wantsHTML reports a browser navigating to a page (as opposed to an XHR,
// fetch, API or websocket client).
func wantsHTML(r *http.Request) bool {
	if r.Header.Get("Upgrade") != "" {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// needLogin sends browsers to the login page and tells others 401.
func (h *Handler) needLogin(w http.ResponseWriter, r *http.Request) error {
	if wantsHTML(r) {
		next := r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			next += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, "/hub/login?next="+url.QueryEscape(safeNext(next)), http.StatusFound)
		return nil
	}
	w.Header().Set("WWW-Authenticate", `Cookie realm="hubgate"`)
	return writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "login required", "login": "/hub/login"})
}

// refuse answers a denied request with a page or JSON and audits it.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, msg, reason string, fields ...zap.Field) error {
	h.denied(r, status, reason, fields...)
	if wantsHTML(r) || r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return h.pages.render(w, status, "error", pageData{Title: http.StatusText(status), Message: msg})
	}
	return writeJSON(w, status, map[string]any{"error": msg})
}

// denied audits and counts a refused request.
func (h *Handler) denied(r *http.Request, status int, reason string, fields ...zap.Field) {
	h.audit.Warn("denied", append(fields, zap.String("reason", reason), zap.String("path", r.URL.Path), zap.Int("status", status))...)
	metrics.denials.WithLabelValues(reason).Inc()
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// serveHealth answers load balancers. It reports whether the policy is
// loaded and the last reload's result; it needs no login and shows no
// names.
func (h *Handler) serveHealth(w http.ResponseWriter, _ *http.Request) error {
	res := h.watcher.LastResult()
	return writeJSON(w, http.StatusOK, map[string]any{
		"status":           "ok",
		"policy_last_ok":   res.OK,
		"policy_reloaded":  res.Time,
		"routes_cached":    h.hub.routes.Len(),
		"starts_in_flight": h.hub.inFlight(),
	})
}

// serveHome shows the user's servers and the images the policy allows.
func (h *Handler) serveHome(w http.ResponseWriter, r *http.Request) error {
	s := h.currentSession(r)
	if s == nil {
		return h.needLogin(w, r)
	}
	setUserPlaceholders(r, s)
	pol := h.watcher.Current()
	if !pol.Known(s.User, s.Groups) {
		return h.refuse(w, r, http.StatusForbidden, "Your account is not in this hub's policy. Ask an admin to add you.", "not_in_policy", zap.String("user", s.User))
	}
	grant := pol.Grant(s.User, s.Groups)
	h.hub.markSeen(s.User)
	var servers []serverView
	for _, key := range grant.Images {
		img := pol.Images[key]
		if img == nil {
			continue
		}
		v := serverView{
			Key:         key,
			Description: img.Description,
			URL:         userPrefix(s.User, key) + strings.TrimPrefix(img.URL, "/"),
			State:       "stopped",
		}
		rk := routeKey(s.User, key)
		if _, ok := h.hub.routes.Peek(rk); ok {
			v.State = "running"
		} else if _, ok := h.hub.pending(rk); ok {
			v.State = "starting"
		}
		servers = append(servers, v)
	}
	return h.pages.render(w, http.StatusOK, "home", pageData{
		Title: "Home", User: s.User, CSRF: h.csrfToken(s), Servers: servers, Admin: grant.Admin,
	})
}

// serverView is one row of the home page.
type serverView struct {
	Key, Description, URL, State string
}

// userPrefix is the URL prefix of a user's server, with a trailing slash.
func userPrefix(user, server string) string {
	return "/user/" + url.PathEscape(user) + "/" + url.PathEscape(server) + "/"
}
