package login

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/idp"
	"github.com/hubgate/hubgate/caddymodule/session"
)

// oauthState is the pre-login cookie of an OIDC or GitHub login: it binds
// the callback to the browser that started the login and keeps the nonce
// and PKCE verifier out of every URL.
type oauthState struct {
	Provider string `json:"p"`
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Redirect string `json:"r"`
	Next     string `json:"x"`
	Expires  int64  `json:"exp"`
}

// callbackURL is the single redirect URI, on the hub's origin.
func (a *Authenticator) callbackURL(r *http.Request) string {
	return a.Origin(r) + "/hub/oauth_callback"
}

// Origin is the hub's origin: the configured public URL, or else the one
// the browser used (https unless the request came over plain HTTP, and
// the Host it sent).
func (a *Authenticator) Origin(r *http.Request) string {
	if a.cfg.PublicURL != "" {
		return a.cfg.PublicURL
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}

// ServeOAuthStart begins a login at provider name: it sets the pre-login
// cookie and sends the browser to the provider.
func (a *Authenticator) ServeOAuthStart(w http.ResponseWriter, r *http.Request, name string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on login start", r.Method))
	}
	next := SafeNext(r.URL.Query().Get("next"))
	p := a.byName[name]
	if p == nil {
		return a.problem(w, r, http.StatusNotFound, "There is no login provider called "+strconv.Quote(name)+" here.", "unknown_provider", name)
	}
	if s := a.Authenticate(r); s != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return nil
	}
	if blocked, wait := a.o.State.idpCalls.attempt("start:"+ClientIP(r), ClientIP(r), time.Now()); blocked {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		return a.problem(w, r, http.StatusTooManyRequests, "Too many logins were started from your address. Try again later.", "rate_limited", name)
	}
	flow := idp.NewFlow(a.callbackURL(r))
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	target, err := p.AuthCodeURL(ctx, flow)
	if err != nil {
		a.o.Logger.Warn("identity provider unavailable", zap.String("provider", name), zap.Error(err))
		return a.problem(w, r, http.StatusBadGateway, "The identity provider "+p.Label()+" cannot be reached right now. Try again in a minute.", "idp_unavailable", name)
	}
	st := oauthState{
		Provider: name, State: flow.State, Nonce: flow.Nonce, Verifier: flow.Verifier,
		Redirect: flow.RedirectURI, Next: next, Expires: time.Now().Add(oauthStateTTL).Unix(),
	}
	sealed, err := a.o.Codec.Seal(session.PurposeOAuth, st)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	// Lax, not Strict: the callback is a top-level navigation coming
	// from the provider's site, and must carry this cookie.
	session.SetCookie(w, session.OAuthCookie, sealed, oauthStateTTL, http.SameSiteLaxMode)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// callbackLimits bounds each callback parameter.
var callbackLimits = map[string]int{
	"code": 2048, "state": 256, "error": 128, "error_description": 1024,
	"error_uri": 1024, "iss": 1024, "session_state": 1024, "scope": 1024,
}

// ServeOAuthCallback is the redirect URI of every provider.
func (a *Authenticator) ServeOAuthCallback(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on the login callback", r.Method))
	}
	// Whatever happens, the pre-login cookie is used up.
	session.ClearCookie(w, session.OAuthCookie)
	if len(r.URL.RawQuery) > maxCallbackQuery {
		return a.problem(w, r, http.StatusRequestURITooLong, "The answer from the identity provider was too large. Start the login again.", "oversized_callback", "")
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return a.problem(w, r, http.StatusBadRequest, "The answer from the identity provider could not be read. Start the login again.", "bad_callback", "")
	}
	for k, vs := range q {
		limit, known := callbackLimits[k]
		if !known {
			limit = 1024
		}
		if len(vs) > 1 || len(vs[0]) > limit {
			return a.problem(w, r, http.StatusBadRequest, "The answer from the identity provider was malformed or too large. Start the login again.", "oversized_callback", "", zap.String("param", sanitizeWord(k)))
		}
	}

	var st oauthState
	c, cerr := r.Cookie(session.OAuthCookie)
	haveState := cerr == nil && a.o.Codec.Open(session.PurposeOAuth, c.Value, &st) == nil
	stateMatches := haveState && q.Get("state") != "" && subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) == 1
	provider := ""
	if stateMatches {
		provider = st.Provider
	}

	if e := q.Get("error"); e != "" {
		if stateMatches {
			_, _ = a.o.State.consumeStateShared(r.Context(), st.State)
		}
		label := ""
		if haveState {
			label = a.providerLabel(st.Provider)
		}
		return a.problem(w, r, http.StatusForbidden, idpErrorMessage(label, e), "idp_error", provider, zap.String("idp_error", sanitizeWord(e)))
	}
	switch {
	case !haveState:
		return a.problem(w, r, http.StatusBadRequest, "This login was not started in this browser, or the browser did not keep its login cookie. Start the login again.", "no_login_state", "")
	case time.Now().Unix() > st.Expires:
		return a.problem(w, r, http.StatusBadRequest, "This login took more than 10 minutes. Start it again.", "login_state_expired", st.Provider)
	case !stateMatches:
		return a.problem(w, r, http.StatusBadRequest, "This answer does not belong to the login started in this browser. Start the login again.", "state_mismatch", st.Provider)
	}
	if fresh, err := a.o.State.consumeStateShared(r.Context(), st.State); err != nil {
		a.o.Logger.Error("login callback refused: used states unavailable", zap.Error(err))
		return a.problem(w, r, http.StatusServiceUnavailable, "The login could not be completed: the gateway cannot reach its shared storage. Start the login again in a minute.", "storage_error", st.Provider)
	} else if !fresh {
		return a.problem(w, r, http.StatusBadRequest, "This login answer was already used. Start the login again.", "state_replayed", st.Provider)
	}
	p := a.byName[st.Provider]
	if p == nil {
		return a.problem(w, r, http.StatusBadRequest, "The login provider of this login is no longer configured.", "unknown_provider", st.Provider)
	}
	// RFC 9207: a provider that names itself must be the one the login
	// was started with (no mix-up between providers).
	if o, ok := p.(*idp.OIDC); ok && q.Get("iss") != "" && q.Get("iss") != o.Issuer() {
		return a.problem(w, r, http.StatusBadRequest, "The answer came from another identity provider than the one this login was started with.", "issuer_mismatch", st.Provider)
	}
	code := q.Get("code")
	if code == "" {
		return a.problem(w, r, http.StatusBadRequest, "The identity provider sent no authorization code. Start the login again.", "no_code", st.Provider)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if blocked, wait := a.o.State.idpCalls.attempt("exchange:"+ClientIP(r), ClientIP(r), time.Now()); blocked {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		return a.problem(w, r, http.StatusTooManyRequests, "Too many logins were tried from your address. Try again later.", "rate_limited", st.Provider)
	}
	id, err := p.Exchange(ctx, code, idp.Flow{State: st.State, Nonce: st.Nonce, Verifier: st.Verifier, RedirectURI: st.Redirect})
	if err != nil {
		var le *idp.LoginError
		if errors.As(err, &le) {
			return a.problem(w, r, http.StatusForbidden, le.Message, le.Reason, st.Provider, zap.NamedError("cause", le.Err))
		}
		a.o.Logger.Warn("login exchange failed", zap.String("provider", st.Provider), zap.Error(err))
		return a.problem(w, r, http.StatusBadGateway, "The identity provider "+p.Label()+" could not be reached to complete the login. Try again in a minute.", idp.Reason(err), st.Provider)
	}
	return a.completeLogin(w, r, p, id, SafeNext(st.Next))
}

func (a *Authenticator) providerLabel(name string) string {
	if p := a.byName[name]; p != nil {
		return p.Label()
	}
	return ""
}

// idpErrorMessage explains an OAuth error code in our own words; label is
// the provider's button text, if known.
func idpErrorMessage(label, code string) string {
	where := "the identity provider"
	if label != "" {
		where += " (" + label + ")"
	}
	switch code {
	case "access_denied":
		return "The login was cancelled or refused at " + where + ", so you are not logged in. You can try again."
	case "login_required", "interaction_required", "consent_required", "account_selection_required":
		return "The identity provider needs you to log in or give consent first. Try again."
	case "temporarily_unavailable", "server_error":
		return "The identity provider had a problem. Try again in a minute."
	case "redirect_uri_mismatch", "unauthorized_client", "invalid_client", "invalid_scope", "invalid_request", "unsupported_response_type", "application_suspended":
		return "The login is misconfigured at " + where + " (" + sanitizeWord(code) + "). Please tell an admin."
	}
	return "The identity provider reported an error (" + sanitizeWord(code) + "). Try again, or tell an admin."
}

// sanitizeWord keeps a short identifier-like string for logs and pages.
func sanitizeWord(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' {
			return r
		}
		return -1
	}, s)
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// bindingProvider names the account system of an identity for the user
// name binding: GitHub, or the OIDC issuer (names of providers may be
// edited; issuers identify them).
func bindingProvider(p idp.Provider) string {
	if o, ok := p.(*idp.OIDC); ok {
		return "oidc:" + o.Issuer()
	}
	return idp.KindGitHub
}

// completeLogin turns a verified identity into a session.
func (a *Authenticator) completeLogin(w http.ResponseWriter, r *http.Request, p idp.Provider, id *idp.Identity, next string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	fields := []zap.Field{zap.String("user", id.User)}
	if id.GitHubID != 0 {
		fields = append(fields, zap.Int64("github_id", id.GitHubID))
	}
	pol := a.o.Policy()
	if _, ok := pol.Accounts[id.User]; ok {
		return a.problem(w, r, http.StatusForbidden, "The user name "+strconv.Quote(id.User)+" is a local account of this hub, so it cannot be used through "+p.Label()+". Ask an admin.", "name_is_local_account", id.Provider, fields...)
	}
	ok, bound, err := a.o.Store.Bind(ctx, id.User, bindingProvider(p), id.Subject)
	if err != nil {
		a.o.Logger.Error("user name binding unavailable", append(fields, zap.Error(err))...)
		return a.problem(w, r, http.StatusServiceUnavailable, "The login could not be recorded. Try again in a minute.", "storage_error", id.Provider, fields...)
	}
	if !ok {
		return a.problem(w, r, http.StatusForbidden,
			"The user name "+strconv.Quote(id.User)+" already belongs to another account (its files are kept for that account). "+
				"If your account was renamed, or took over a name someone else used before, ask an admin: they can release the name.",
			"identity_mismatch", id.Provider,
			append(fields, zap.String("subject", id.Subject), zap.String("bound_provider", bound.Provider), zap.String("bound_subject", bound.Subject), zap.String("storage_key", a.o.Store.BindingKey(id.User)))...)
	}
	if id.Token != nil && id.GitHubID != 0 {
		if err := a.o.Store.SaveToken(ctx, id.GitHubID, id.Token); err != nil {
			a.o.Logger.Error("storing the GitHub token failed", append(fields, zap.Error(err))...)
			return a.problem(w, r, http.StatusServiceUnavailable, "The login could not be recorded. Try again in a minute.", "storage_error", id.Provider, fields...)
		}
	}
	now := time.Now()
	s := session.Session{
		User:      id.User,
		Groups:    id.Groups,
		Provider:  id.Provider,
		Subject:   id.Subject,
		GitHubID:  id.GitHubID,
		Name:      id.Name,
		Email:     id.Email,
		CheckedAt: now.Unix(),
	}
	if err := a.mint(w, &s, pol, now); err != nil {
		return a.problem(w, r, http.StatusForbidden, "Your identity provider lists too many groups for a session cookie. Ask an admin.", "session_too_large", id.Provider, fields...)
	}
	if o, ok := p.(*idp.OIDC); ok && id.IDToken != "" && o.EndSessionOrigin(ctx) != "" {
		if v, err := a.o.Codec.Seal(session.PurposeIDToken, idTokenHint{SID: s.ID, Raw: id.IDToken}); err == nil && len(v) <= maxCookieValue {
			session.SetCookie(w, session.IDTokenCookie, v, a.cfg.SessionTTL, http.SameSiteLaxMode)
		}
	}
	if id.GitHubID != 0 {
		a.o.State.setMember(id.GitHubID, id.User, s.Groups, now, s.Expires)
	}
	a.o.Seen(id.User)
	a.o.Audit.Info("login", append(fields, zap.String("remote_ip", ClientIP(r)), zap.String("provider", id.Provider), zap.Int("groups", len(s.Groups)))...)
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

// idTokenHint is the sealed cookie that keeps the ID token for logout.
type idTokenHint struct {
	SID string `json:"sid"`
	Raw string `json:"t"`
}
