package login

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
)

// loginState is the pre-login cookie: it binds the login form to the
// browser that loaded it.
type loginState struct {
	CSRF    string `json:"c"`
	Expires int64  `json:"exp"`
}

// credentialTag digests a local account's password hash for the session.
func credentialTag(hash string) string {
	sum := sha256.Sum256([]byte("hubgate local credential v1\x00" + hash))
	return hex.EncodeToString(sum[:8])
}

// localStillValid reports whether a local session's account still has the
// password hash the session was opened with.
func (a *Authenticator) localStillValid(s *session.Session) bool {
	if !a.cfg.Local {
		return false
	}
	pol := a.o.Policy()
	hash, ok := pol.Accounts[s.User]
	return ok && session.CheckCSRF(s.Credential, a.credentialTag(pol, hash))
}

// credTagCache is the credential tags of one policy's accounts, by
// password hash.
type credTagCache struct {
	pol  *policies.Policy
	tags sync.Map // hash -> tag
}

// credentialTag is credentialTag(hash), computed once per policy and
// hash: every request of a local session checks it.
func (a *Authenticator) credentialTag(pol *policies.Policy, hash string) string {
	c := a.credTags.Load()
	if c == nil || c.pol != pol {
		c = &credTagCache{pol: pol}
		a.credTags.Store(c)
	}
	if tag, ok := c.tags.Load(hash); ok {
		return tag.(string)
	}
	tag := credentialTag(hash)
	c.tags.Store(hash, tag)
	return tag
}

// ServeLogin shows the login page (GET): a button per identity provider
// and the local account form when it is enabled; with ?provider=<name> it
// starts that provider's login. POST checks a local account.
func (a *Authenticator) ServeLogin(w http.ResponseWriter, r *http.Request) error {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if p := r.URL.Query().Get("provider"); p != "" && p != providerLocal {
			return a.ServeOAuthStart(w, r, p)
		}
	}
	next := SafeNext(r.FormValue("next"))
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if s := a.Authenticate(r); s != nil {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return nil
		}
		if a.cfg.AutoLogin && !a.cfg.Local && len(a.cfg.Providers) == 1 {
			// Straight to the provider; after a failure there the user
			// sees our error page (with a link back here), never a loop.
			return a.ServeOAuthStart(w, r, a.cfg.Providers[0].Name())
		}
		return a.showLogin(w, r, next, "", http.StatusOK)
	case http.MethodPost:
		return a.postLogin(w, r, next)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on login", r.Method))
	}
}

func (a *Authenticator) showLogin(w http.ResponseWriter, r *http.Request, next, problem string, status int) error {
	page := pages.LoginPage{Frame: pages.Frame{Title: "Log in"}, Next: next, Problem: problem, Local: a.cfg.Local}
	for _, p := range a.cfg.Providers {
		page.Providers = append(page.Providers, pages.LoginButton{
			Name:  p.Name(),
			Label: p.Label(),
			URL:   "/hub/oauth_start/" + url.PathEscape(p.Name()) + "?next=" + url.QueryEscape(next),
		})
	}
	if page.Local {
		st := loginState{CSRF: session.NewID(), Expires: time.Now().Add(loginStateTTL).Unix()}
		sealed, err := a.o.Codec.Seal(session.PurposeLogin, st)
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		session.SetCookie(w, session.LoginCookie, sealed, loginStateTTL, http.SameSiteStrictMode)
		page.CSRF = st.CSRF
	}
	return a.o.Pages.Login(w, status, page)
}

func (a *Authenticator) postLogin(w http.ResponseWriter, r *http.Request, next string) error {
	if !a.cfg.Local {
		return a.refuse(w, r, http.StatusNotFound, "Local accounts are disabled on this hub.", "local_disabled")
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("parse login form: %w", err))
	}
	if crossSite(r) {
		return a.refuse(w, r, http.StatusForbidden, "cross-site login refused", "csrf")
	}
	var st loginState
	c, err := r.Cookie(session.LoginCookie)
	if err != nil || a.o.Codec.Open(session.PurposeLogin, c.Value, &st) != nil ||
		time.Now().Unix() > st.Expires || !session.CheckCSRF(r.PostFormValue("csrf"), st.CSRF) {
		return a.showLogin(w, r, next, "Your login form expired. Please try again.", http.StatusBadRequest)
	}

	user := policies.NormalizeUser(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	ip := ClientIP(r)
	now := time.Now()
	if user == "" || len(user) > 128 || password == "" || len(password) > 1024 {
		return a.showLogin(w, r, next, "Enter your user name and password.", http.StatusBadRequest)
	}
	// The attempt is counted before the password is checked, so many
	// concurrent guesses cannot all pass the limit while their bcrypt
	// comparisons run; a good password takes its count back.
	blocked, wait, err := a.o.State.loginAttempt(r.Context(), user, ip, now)
	if err != nil {
		a.o.Logger.Error("login refused: failed-login counts unavailable", zap.String("user", user), zap.Error(err))
		w.Header().Set("Retry-After", "10")
		return a.showLogin(w, r, next, "Logins are unavailable for a moment: the gateway cannot reach its shared storage. Servers already running are not affected. Try again in a minute.", http.StatusServiceUnavailable)
	}
	if blocked {
		a.o.Audit.Warn("login refused: too many failures", zap.String("user", user), zap.String("remote_ip", ip), zap.String("reason", "rate_limited"))
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		return a.showLogin(w, r, next, "Too many failed logins. Try again later.", http.StatusTooManyRequests)
	}
	pol := a.o.Policy()
	if !pol.CheckPassword(user, password) {
		a.o.Audit.Warn("login failed", zap.String("user", user), zap.String("remote_ip", ip), zap.String("provider", providerLocal), zap.String("reason", "bad_credentials"))
		return a.showLogin(w, r, next, "Wrong user name or password.", http.StatusUnauthorized)
	}
	a.o.State.loginSucceeded(r.Context(), user, ip)
	a.o.Seen(user)
	s := session.Session{User: user, Provider: providerLocal, Credential: credentialTag(pol.Accounts[user])}
	if err := a.mint(w, &s, pol, now); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	session.ClearCookie(w, session.LoginCookie)
	a.o.Audit.Info("login", zap.String("user", user), zap.String("remote_ip", ip), zap.String("provider", providerLocal))
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}
