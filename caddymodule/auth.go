package caddymodule

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/idp"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
)

// cookieValue finds one cookie in the request's Cookie headers without
// parsing (and allocating) all of them. It returns "" when it is absent.
func cookieValue(hdr http.Header, name string) string {
	for _, line := range hdr["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if len(part) > len(name) && part[len(name)] == '=' && part[:len(name)] == name {
				v := part[len(name)+1:]
				if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v
			}
		}
	}
	return ""
}

// Cookie names. The __Host- prefix makes browsers insist on Secure, Path=/
// and no Domain, so no sibling host can set or read them.
const (
	sessionCookie = "__Host-hubgate-session"
	loginCookie   = "__Host-hubgate-login"
	cookiePrefix  = "__Host-hubgate-"
)

// loginState is the pre-login cookie: it binds the login form to the
// browser that loaded it.
type loginState struct {
	CSRF    string `json:"c"`
	Expires int64  `json:"exp"`
}

const loginStateTTL = time.Hour

// currentSession returns the valid session of the request, or nil.
func (h *Handler) currentSession(r *http.Request) *session.Session {
	value := cookieValue(r.Header, sessionCookie)
	if value == "" {
		return nil
	}
	// Opened sessions are cached by their sealed value: a logged-in
	// browser's requests then cost a map lookup instead of a base64
	// decode, an AES-GCM open and a JSON decode. The value is
	// authenticated, so the cache cannot be poisoned; expiry and
	// revocation are still checked on every request.
	var s session.Session
	ok := false
	if h.sessions != nil {
		s, ok = h.sessions.Get(value)
	}
	if !ok {
		if err := h.codec.Open(session.PurposeSession, value, &s); err != nil {
			return nil
		}
		if h.sessions != nil {
			h.sessions.Add(value, s)
		}
	}
	if !s.Valid(time.Now()) {
		return nil
	}
	// Logged out (here or on another instance): a copy of the cookie
	// taken before the logout is worthless. A map lookup, no I/O.
	if h.hub.auth.isRevoked(s.ID) {
		return nil
	}
	// A GitHub session carries the groups of the latest re-check, and
	// ends when GitHub no longer vouches for it.
	if s.GitHubID != 0 && !h.githubSession(r.Context(), &s) {
		return nil
	}
	return &s
}

func (h *Handler) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration, sameSite http.SameSite) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   int(maxAge / time.Second),
		Secure:   true,
		HttpOnly: true,
		SameSite: sameSite,
	})
}

func (h *Handler) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// csrfToken derives the CSRF token of a session; it needs no storage.
func (h *Handler) csrfToken(s *session.Session) string {
	return hex.EncodeToString(h.codec.MAC("hubgate csrf v1", s.ID)[:16])
}

func (h *Handler) checkCSRF(r *http.Request, want string) bool {
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// crossSite reports requests that the browser marks as coming from
// another site; they never change state here.
func crossSite(r *http.Request) bool {
	return r.Header.Get("Sec-Fetch-Site") == "cross-site"
}

func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	return r.RemoteAddr
}

// serveLogin shows the login page (GET): a button per identity provider
// and the local account form when it is enabled; with ?provider=<name> it
// starts that provider's login. POST checks a local account.
func (h *Handler) serveLogin(w http.ResponseWriter, r *http.Request) error {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if p := r.URL.Query().Get("provider"); p != "" && p != providerLocal {
			return h.serveOAuthStart(w, r, p)
		}
	}
	next := safeNext(r.FormValue("next"))
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if s := h.currentSession(r); s != nil {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return nil
		}
		return h.showLogin(w, r, next, "", http.StatusOK)
	case http.MethodPost:
		return h.postLogin(w, r, next)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on login", r.Method))
	}
}

// loginPage is what the login template shows.
type loginPage struct {
	pageData
	Providers []loginButton
	Local     bool
}

// loginButton starts one provider's login.
type loginButton struct {
	Name, Label, URL string
}

func (h *Handler) showLogin(w http.ResponseWriter, r *http.Request, next, problem string, status int) error {
	page := loginPage{pageData: pageData{Title: "Log in", Next: next, Problem: problem}, Local: h.auth.local}
	for _, p := range h.auth.providers {
		page.Providers = append(page.Providers, loginButton{
			Name:  p.Name(),
			Label: p.Label(),
			URL:   "/hub/oauth_start/" + url.PathEscape(p.Name()) + "?next=" + url.QueryEscape(next),
		})
	}
	if page.Local {
		st := loginState{CSRF: session.NewID(), Expires: time.Now().Add(loginStateTTL).Unix()}
		sealed, err := h.codec.Seal(session.PurposeLogin, st)
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		h.setCookie(w, loginCookie, sealed, loginStateTTL, http.SameSiteStrictMode)
		page.CSRF = st.CSRF
	}
	return h.pages.render(w, status, "login", page)
}

func (h *Handler) postLogin(w http.ResponseWriter, r *http.Request, next string) error {
	if !h.auth.local {
		return h.refuse(w, r, http.StatusNotFound, "Local accounts are disabled on this hub.", "local_disabled")
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("parse login form: %w", err))
	}
	if crossSite(r) {
		return h.refuse(w, r, http.StatusForbidden, "cross-site login refused", "csrf")
	}
	var st loginState
	c, err := r.Cookie(loginCookie)
	if err != nil || h.codec.Open(session.PurposeLogin, c.Value, &st) != nil ||
		time.Now().Unix() > st.Expires || !h.checkCSRF(r, st.CSRF) {
		return h.showLogin(w, r, next, "Your login form expired. Please try again.", http.StatusBadRequest)
	}

	user := policies.NormalizeUser(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	ip := clientIP(r)
	now := time.Now()
	if user == "" || len(user) > 128 || password == "" || len(password) > 1024 {
		return h.showLogin(w, r, next, "Enter your user name and password.", http.StatusBadRequest)
	}
	if blocked, wait := h.hub.limiter.blocked(user, ip, now); blocked {
		h.audit.Warn("login refused: too many failures", zap.String("user", user), zap.String("remote_ip", ip), zap.String("reason", "rate_limited"))
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		return h.showLogin(w, r, next, "Too many failed logins. Try again later.", http.StatusTooManyRequests)
	}
	pol := h.watcher.Current()
	if !pol.CheckPassword(user, password) {
		h.hub.limiter.fail(user, ip, now)
		h.audit.Warn("login failed", zap.String("user", user), zap.String("remote_ip", ip), zap.String("provider", "local"), zap.String("reason", "bad_credentials"))
		return h.showLogin(w, r, next, "Wrong user name or password.", http.StatusUnauthorized)
	}
	h.hub.limiter.succeed(user)
	h.hub.markSeen(user)
	s := session.Session{
		ID:       session.NewID(),
		User:     user,
		Provider: "local",
		IssuedAt: now.Unix(),
		Expires:  now.Add(time.Duration(h.SessionTTL)).Unix(),
	}
	sealed, err := h.codec.Seal(session.PurposeSession, s)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	h.setCookie(w, sessionCookie, sealed, time.Duration(h.SessionTTL), http.SameSiteLaxMode)
	h.clearCookie(w, loginCookie)
	h.audit.Info("login", zap.String("user", user), zap.String("remote_ip", ip), zap.String("provider", "local"))
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

// serveLogout ends the session. GET shows a confirmation form (a link
// someone else planted cannot log you out); POST with the CSRF token logs
// out: the session is revoked on every gateway instance (a record in
// Caddy's storage), its websockets are closed, and a session from an OIDC
// provider that offers RP-initiated logout continues at its
// end_session_endpoint, which comes back to /.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) error {
	s := h.currentSession(r)
	if s == nil {
		h.clearCookie(w, sessionCookie)
		h.clearCookie(w, idTokenCookie)
		http.Redirect(w, r, "/hub/login", http.StatusSeeOther)
		return nil
	}
	oidcProvider, _ := h.auth.byName[s.Provider].(*idp.OIDC)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		var targets []string
		if oidcProvider != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			if o := oidcProvider.EndSessionOrigin(ctx); o != "" {
				targets = append(targets, o)
			}
			cancel()
		}
		return h.pages.render(w, http.StatusOK, "logout", pageData{Title: "Log out", User: s.User, CSRF: h.csrfToken(s)}, targets...)
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if crossSite(r) || !h.checkCSRF(r, h.csrfToken(s)) {
			return h.refuse(w, r, http.StatusForbidden, "logout refused: missing or wrong CSRF token", "csrf")
		}
		h.clearCookie(w, sessionCookie)
		h.clearCookie(w, idTokenCookie)
		h.revokeSession(r.Context(), s)
		closed := h.hub.streams.closeSession(s.ID)
		h.audit.Info("logout", zap.String("user", s.User), zap.String("provider", s.Provider), zap.Int("streams_closed", closed))
		target := "/hub/login"
		if oidcProvider != nil {
			var hint idTokenHint
			if c, err := r.Cookie(idTokenCookie); err != nil || h.codec.Open(session.PurposeIDToken, c.Value, &hint) != nil || hint.SID != s.ID {
				hint = idTokenHint{}
			}
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			if u := oidcProvider.EndSessionURL(ctx, hint.Raw, "https://"+r.Host+"/"); u != "" {
				target = u
			}
			cancel()
		}
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, target, http.StatusSeeOther)
		return nil
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on logout", r.Method))
	}
}
