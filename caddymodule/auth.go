package caddymodule

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
)

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
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	var s session.Session
	if err := h.codec.Open(session.PurposeSession, c.Value, &s); err != nil {
		return nil
	}
	if !s.Valid(time.Now()) {
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

// serveLogin shows the login form (GET) or checks a local account (POST).
func (h *Handler) serveLogin(w http.ResponseWriter, r *http.Request) error {
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

func (h *Handler) showLogin(w http.ResponseWriter, r *http.Request, next, problem string, status int) error {
	st := loginState{CSRF: session.NewID(), Expires: time.Now().Add(loginStateTTL).Unix()}
	sealed, err := h.codec.Seal(session.PurposeLogin, st)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	h.setCookie(w, loginCookie, sealed, loginStateTTL, http.SameSiteStrictMode)
	return h.pages.render(w, status, "login", pageData{
		Title:   "Log in",
		Next:    next,
		CSRF:    st.CSRF,
		Problem: problem,
	})
}

func (h *Handler) postLogin(w http.ResponseWriter, r *http.Request, next string) error {
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
// out.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) error {
	s := h.currentSession(r)
	if s == nil {
		h.clearCookie(w, sessionCookie)
		http.Redirect(w, r, "/hub/login", http.StatusSeeOther)
		return nil
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return h.pages.render(w, http.StatusOK, "logout", pageData{Title: "Log out", User: s.User, CSRF: h.csrfToken(s)})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if crossSite(r) || !h.checkCSRF(r, h.csrfToken(s)) {
			return h.refuse(w, r, http.StatusForbidden, "logout refused: missing or wrong CSRF token", "csrf")
		}
		h.clearCookie(w, sessionCookie)
		closed := h.hub.streams.closeSession(s.ID)
		h.audit.Info("logout", zap.String("user", s.User), zap.Int("streams_closed", closed))
		http.Redirect(w, r, "/hub/login", http.StatusSeeOther)
		return nil
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on logout", r.Method))
	}
}
