package caddymodule

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/hubgate/hubgate/caddymodule/idp"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
)

// OIDCConfig configures one OpenID Connect identity provider. Discovery
// (Issuer/.well-known/openid-configuration) runs on the first login, not
// when the config loads, so a provider that is down never stops Caddy.
type OIDCConfig struct {
	// Name identifies the provider in URLs (/hub/oauth_start/<name>) and
	// sessions. Lower-case letters, digits and dashes; not "github" or
	// "local". Required.
	Name string `json:"name,omitempty"`

	// Issuer is the provider's issuer URL, exactly as its ID tokens name
	// it, such as "https://accounts.example.org/realms/research". https is
	// required except on a loopback address. Required.
	Issuer string `json:"issuer,omitempty"`

	// ClientID is the client registered at the provider. Its redirect URI
	// must be https://<this site>/hub/oauth_callback. Required.
	ClientID string `json:"client_id,omitempty"`

	// ClientSecret is the client's secret. Use a placeholder such as
	// "{env.HUBGATE_OIDC_SECRET}" so the secret stays out of the config;
	// it is replaced when the config loads and never logged.
	ClientSecret string `json:"client_secret,omitempty"`

	// Scopes are requested at login; "openid" is always added. Add the
	// scope your provider needs for the groups claim, if any.
	// Default: openid, profile, email.
	Scopes []string `json:"scopes,omitempty"`

	// UsernameClaim is the claim that becomes the user name (lower-cased).
	// When it is missing, a verified email address is used instead.
	// Default: "preferred_username".
	UsernameClaim string `json:"username_claim,omitempty"`

	// GroupsClaim is the claim (a list of strings) whose values become
	// the policy groups "oidc:<value>". Default: "groups".
	GroupsClaim string `json:"groups_claim,omitempty"`

	// RequireEmailVerified refuses logins whose email address the
	// provider does not mark as verified. Default: false.
	RequireEmailVerified bool `json:"require_email_verified,omitempty"`

	// Label is the text of the provider's button on the login page.
	// Default: "Log in with <name>".
	Label string `json:"label,omitempty"`
}

// GitHubConfig configures login with GitHub (github.com or GitHub
// Enterprise Server), through an OAuth app or a GitHub App.
type GitHubConfig struct {
	// ClientID is the OAuth app's (or GitHub App's) client ID. Its
	// callback URL must be https://<this site>/hub/oauth_callback.
	// Required.
	ClientID string `json:"client_id,omitempty"`

	// ClientSecret is the client secret; use a placeholder such as
	// "{env.HUBGATE_GITHUB_SECRET}". It is never logged.
	ClientSecret string `json:"client_secret,omitempty"`

	// URL is GitHub's web address. Default: "https://github.com". For
	// GitHub Enterprise Server, "https://github.example.org". It is also
	// given to containers as HUBGATE_GIT_URL.
	URL string `json:"url,omitempty"`

	// APIURL is the REST API's address. Default: "https://api.github.com";
	// for GitHub Enterprise Server, "https://github.example.org/api/v3".
	APIURL string `json:"api_url,omitempty"`

	// Orgs, if set, is an allow-list: only members of at least one of
	// these organizations may log in (checked with
	// GET /orgs/{org}/members/{user} at login and at every re-check), and
	// only groups of these organizations are kept.
	Orgs []string `json:"orgs,omitempty"`

	// Scopes are requested from an OAuth app. Default: "read:org" and
	// "user:email". Add "repo" to let containers clone private repos with
	// the user's token. Not sent when AppTokens is set.
	Scopes []string `json:"scopes,omitempty"`

	// RecheckInterval is how often a logged-in user's org and team
	// memberships are read again with their token: someone removed from
	// a GitHub team loses what the team granted within this interval.
	// Default: 10m.
	RecheckInterval caddy.Duration `json:"recheck_interval,omitempty"`

	// AppTokens says the client is a GitHub App: no scopes are requested
	// and user tokens are expected to expire (8 hours) and to be refreshed
	// with their refresh tokens, which hubgate does.
	AppTokens bool `json:"app_tokens,omitempty"`

	// Label is the text of the login button. Default: "Log in with GitHub".
	Label string `json:"label,omitempty"`
}

// LocalConfig configures the local accounts of the policy file.
type LocalConfig struct {
	// Enabled offers the user name and password form. Default: true.
	Enabled *bool `json:"enabled,omitempty"`
}

const (
	defaultRecheckInterval = 10 * time.Minute
	oauthCookie            = "__Host-hubgate-oauth"
	idTokenCookie          = "__Host-hubgate-idt"
	providerLocal          = "local"
	maxCookieValue         = 3900
	maxCallbackQuery       = 8192
)

var providerNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}$`)

// authRuntime is a handler's provisioned login configuration.
type authRuntime struct {
	providers []idp.Provider // in login page order
	byName    map[string]idp.Provider
	github    *idp.GitHub
	gitURL    string
	store     *idp.Store
	local     bool
	recheck   time.Duration
	signer    *assertionSigner
}

func (h *Handler) applyAuthDefaults() {
	for _, c := range h.OIDC {
		if c == nil {
			continue
		}
		if c.UsernameClaim == "" {
			c.UsernameClaim = "preferred_username"
		}
		if c.GroupsClaim == "" {
			c.GroupsClaim = "groups"
		}
		if len(c.Scopes) == 0 {
			c.Scopes = []string{"openid", "profile", "email"}
		}
		if c.Label == "" {
			c.Label = "Log in with " + c.Name
		}
	}
	if g := h.GitHub; g != nil {
		if g.URL == "" {
			g.URL = idp.DefaultGitHubURL
		}
		if g.APIURL == "" {
			g.APIURL = idp.DefaultGitHubAPIURL
		}
		if g.RecheckInterval == 0 {
			g.RecheckInterval = caddy.Duration(defaultRecheckInterval)
		}
		if g.Label == "" {
			g.Label = "Log in with GitHub"
		}
	}
	if a := h.Assertion; a != nil {
		if a.Header == "" {
			a.Header = defaultAssertionHeader
		}
		if a.TTL == 0 {
			a.TTL = caddy.Duration(defaultAssertionTTL)
		}
	}
}

// validateAuth checks the login configuration without side effects.
// URLs given as placeholders are checked again once replaced.
func (h *Handler) validateAuth() error {
	seen := map[string]bool{}
	for i, c := range h.OIDC {
		if c == nil {
			return fmt.Errorf("hubgate: oidc[%d] is empty", i)
		}
		if !providerNameRE.MatchString(c.Name) || c.Name == idp.KindGitHub || c.Name == providerLocal {
			return fmt.Errorf("hubgate: oidc provider name %q must be lower-case letters, digits and dashes (and not github or local)", c.Name)
		}
		if seen[c.Name] {
			return fmt.Errorf("hubgate: oidc provider %q is configured twice", c.Name)
		}
		seen[c.Name] = true
		if c.Issuer == "" || c.ClientID == "" {
			return fmt.Errorf("hubgate: oidc provider %q needs issuer and client_id", c.Name)
		}
		if !strings.Contains(c.Issuer, "{") {
			if err := idp.CheckProviderURL("oidc "+c.Name+" issuer", c.Issuer); err != nil {
				return fmt.Errorf("hubgate: %w", err)
			}
		}
	}
	if g := h.GitHub; g != nil {
		if g.ClientID == "" {
			return errors.New("hubgate: github needs client_id")
		}
		for _, u := range []struct{ field, v string }{{"github url", g.URL}, {"github api_url", g.APIURL}} {
			if u.v != "" && !strings.Contains(u.v, "{") {
				if err := idp.CheckProviderURL(u.field, u.v); err != nil {
					return fmt.Errorf("hubgate: %w", err)
				}
			}
		}
		if g.RecheckInterval < 0 {
			return errors.New("hubgate: github recheck_interval must not be negative")
		}
		for _, o := range g.Orgs {
			if o == "" || strings.ContainsAny(o, "/ \t") {
				return fmt.Errorf("hubgate: github org %q is not an organization login", o)
			}
		}
	}
	if a := h.Assertion; a != nil {
		if err := validateAssertionHeader(a.Header); err != nil {
			return err
		}
		if a.TTL < 0 {
			return errors.New("hubgate: assertion ttl must not be negative")
		}
	}
	return nil
}

// provisionAuth builds the providers (no network call: OIDC discovery
// happens on the first login), replaces placeholders in secrets, loads
// the assertion key and starts the revocation and re-check loops.
func (h *Handler) provisionAuth(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	rt := &authRuntime{
		byName: make(map[string]idp.Provider),
		local:  h.Local == nil || h.Local.Enabled == nil || *h.Local.Enabled,
		store:  &idp.Store{Storage: ctx.Storage(), Prefix: "hubgate/" + h.Name, Sealer: h.codec},
		gitURL: idp.DefaultGitHubURL,
	}
	for _, c := range h.OIDC {
		issuer := repl.ReplaceAll(c.Issuer, "")
		if err := idp.CheckProviderURL("oidc "+c.Name+" issuer", issuer); err != nil {
			return fmt.Errorf("hubgate: %w", err)
		}
		secret := repl.ReplaceAll(c.ClientSecret, "")
		if c.ClientSecret != "" && secret == "" {
			return fmt.Errorf("hubgate: oidc provider %q: client_secret is empty once its placeholders are replaced (is the environment variable set?)", c.Name)
		}
		p := idp.NewOIDC(idp.OIDCOptions{
			Name:                 c.Name,
			Issuer:               issuer,
			ClientID:             repl.ReplaceAll(c.ClientID, ""),
			ClientSecret:         secret,
			Scopes:               slices.Clone(c.Scopes),
			UsernameClaim:        c.UsernameClaim,
			GroupsClaim:          c.GroupsClaim,
			RequireEmailVerified: c.RequireEmailVerified,
			Label:                c.Label,
		})
		rt.providers = append(rt.providers, p)
		rt.byName[c.Name] = p
	}
	if g := h.GitHub; g != nil {
		u, api := repl.ReplaceAll(g.URL, ""), repl.ReplaceAll(g.APIURL, "")
		for _, x := range []struct{ field, v string }{{"github url", u}, {"github api_url", api}} {
			if err := idp.CheckProviderURL(x.field, x.v); err != nil {
				return fmt.Errorf("hubgate: %w", err)
			}
		}
		secret := repl.ReplaceAll(g.ClientSecret, "")
		if g.ClientSecret != "" && secret == "" {
			return errors.New("hubgate: github: client_secret is empty once its placeholders are replaced (is the environment variable set?)")
		}
		p, err := idp.NewGitHub(idp.GitHubOptions{
			ClientID:     repl.ReplaceAll(g.ClientID, ""),
			ClientSecret: secret,
			URL:          u,
			APIURL:       api,
			Orgs:         slices.Clone(g.Orgs),
			Scopes:       slices.Clone(g.Scopes),
			AppTokens:    g.AppTokens,
			Label:        g.Label,
		})
		if err != nil {
			return fmt.Errorf("hubgate: %w", err)
		}
		rt.github = p
		rt.gitURL = p.URL()
		rt.recheck = time.Duration(g.RecheckInterval)
		rt.providers = append(rt.providers, p)
		rt.byName[p.Name()] = p
	}
	if h.Assertion != nil {
		signer, err := loadAssertionSigner(ctx, ctx.Storage(), "hubgate/"+h.Name+"/assertion.key", h.Assertion)
		if err != nil {
			return fmt.Errorf("hubgate: assertion key: %w", err)
		}
		rt.signer = signer
	}
	h.auth = rt

	// A restarted gateway reads the revocations before its first request
	// (a reload keeps them: they live in the hub).
	h.hub.auth.mu.RLock()
	loaded := h.hub.auth.loaded
	h.hub.auth.mu.RUnlock()
	if !loaded {
		lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := h.loadRevocations(lctx); err != nil {
			h.logger.Warn("reading session revocations failed; retrying in the background", zap.Error(err))
		}
		cancel()
	}
	go h.revocationLoop(ctx)
	if rt.github != nil {
		go h.recheckLoop(ctx)
	}
	return nil
}

// unmarshalAuth parses the login subdirectives of the hubgate block:
//
//	oidc <name> {
//		issuer <url>
//		client_id <id>
//		client_secret <secret>
//		scopes <scope>...
//		username_claim <claim>
//		groups_claim <claim>
//		require_email_verified [true|false]
//		label <text>
//	}
//	github {
//		client_id <id>
//		client_secret <secret>
//		url <url>
//		api_url <url>
//		orgs <org>...
//		scopes <scope>...
//		recheck_interval <duration>
//		app_tokens [true|false]
//		label <text>
//	}
//	local off|on  |  local { enabled true|false }
//	assertion {
//		header <name>
//		ttl <duration>
//	}
func (h *Handler) unmarshalAuth(d *caddyfile.Dispenser) error {
	switch d.Val() {
	case "oidc":
		c := new(OIDCConfig)
		if !d.NextArg() {
			return d.Errf("oidc needs a provider name")
		}
		c.Name = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		for d.NextBlock(1) {
			opt := d.Val()
			var err error
			switch opt {
			case "issuer":
				err = oneArg(d, &c.Issuer)
			case "client_id":
				err = oneArg(d, &c.ClientID)
			case "client_secret":
				err = oneArg(d, &c.ClientSecret)
			case "username_claim":
				err = oneArg(d, &c.UsernameClaim)
			case "groups_claim":
				err = oneArg(d, &c.GroupsClaim)
			case "label":
				err = oneArg(d, &c.Label)
			case "scopes":
				c.Scopes, err = someArgs(d)
			case "require_email_verified":
				c.RequireEmailVerified, err = flagArg(d)
			default:
				return d.Errf("unrecognized oidc option %q", opt)
			}
			if err != nil {
				return err
			}
		}
		h.OIDC = append(h.OIDC, c)
	case "github":
		if d.NextArg() {
			return d.ArgErr()
		}
		if h.GitHub != nil {
			return d.Err("github is configured twice")
		}
		c := new(GitHubConfig)
		for d.NextBlock(1) {
			opt := d.Val()
			var err error
			switch opt {
			case "client_id":
				err = oneArg(d, &c.ClientID)
			case "client_secret":
				err = oneArg(d, &c.ClientSecret)
			case "url":
				err = oneArg(d, &c.URL)
			case "api_url":
				err = oneArg(d, &c.APIURL)
			case "label":
				err = oneArg(d, &c.Label)
			case "orgs":
				var orgs []string
				orgs, err = someArgs(d)
				c.Orgs = append(c.Orgs, orgs...)
			case "scopes":
				c.Scopes, err = someArgs(d)
			case "app_tokens":
				c.AppTokens, err = flagArg(d)
			case "recheck_interval":
				var v string
				if err = oneArg(d, &v); err == nil {
					var dur time.Duration
					if dur, err = caddy.ParseDuration(v); err != nil {
						return d.Errf("recheck_interval: %v", err)
					}
					c.RecheckInterval = caddy.Duration(dur)
				}
			default:
				return d.Errf("unrecognized github option %q", opt)
			}
			if err != nil {
				return err
			}
		}
		h.GitHub = c
	case "local":
		c := new(LocalConfig)
		if d.NextArg() {
			var on bool
			switch d.Val() {
			case "on", "true":
				on = true
			case "off", "false":
			default:
				return d.Errf("local: want on or off, got %q", d.Val())
			}
			c.Enabled = &on
			if d.NextArg() {
				return d.ArgErr()
			}
		}
		for d.NextBlock(1) {
			if d.Val() != "enabled" {
				return d.Errf("unrecognized local option %q", d.Val())
			}
			on, err := flagArg(d)
			if err != nil {
				return err
			}
			c.Enabled = &on
		}
		h.Local = c
	case "assertion":
		if d.NextArg() {
			return d.ArgErr()
		}
		c := new(AssertionConfig)
		for d.NextBlock(1) {
			opt := d.Val()
			switch opt {
			case "header":
				if err := oneArg(d, &c.Header); err != nil {
					return err
				}
			case "ttl":
				var v string
				if err := oneArg(d, &v); err != nil {
					return err
				}
				dur, err := caddy.ParseDuration(v)
				if err != nil {
					return d.Errf("ttl: %v", err)
				}
				c.TTL = caddy.Duration(dur)
			default:
				return d.Errf("unrecognized assertion option %q", opt)
			}
		}
		h.Assertion = c
	}
	return nil
}

func oneArg(d *caddyfile.Dispenser, into *string) error {
	if !d.AllArgs(into) {
		return d.ArgErr()
	}
	return nil
}

func someArgs(d *caddyfile.Dispenser) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	return args, nil
}

// flagArg reads an optional true/false; a bare option means true.
func flagArg(d *caddyfile.Dispenser) (bool, error) {
	args := d.RemainingArgs()
	switch len(args) {
	case 0:
		return true, nil
	case 1:
		b, err := strconv.ParseBool(args[0])
		if err != nil {
			return false, d.Errf("%v", err)
		}
		return b, nil
	}
	return false, d.ArgErr()
}

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

// callbackURL is the single redirect URI: the request's own host, https.
func callbackURL(r *http.Request) string {
	return "https://" + r.Host + "/hub/oauth_callback"
}

// serveOAuthStart begins a login at provider name: it sets the pre-login
// cookie and sends the browser to the provider.
func (h *Handler) serveOAuthStart(w http.ResponseWriter, r *http.Request, name string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on login start", r.Method))
	}
	next := safeNext(r.URL.Query().Get("next"))
	p := h.auth.byName[name]
	if p == nil {
		return h.loginProblem(w, r, http.StatusNotFound, "There is no login provider called "+strconv.Quote(name)+" here.", "unknown_provider", name)
	}
	if s := h.currentSession(r); s != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return nil
	}
	flow := idp.NewFlow(callbackURL(r))
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	target, err := p.AuthCodeURL(ctx, flow)
	if err != nil {
		h.logger.Warn("identity provider unavailable", zap.String("provider", name), zap.Error(err))
		return h.loginProblem(w, r, http.StatusBadGateway, "The identity provider "+p.Label()+" cannot be reached right now. Try again in a minute.", "idp_unavailable", name)
	}
	st := oauthState{
		Provider: name, State: flow.State, Nonce: flow.Nonce, Verifier: flow.Verifier,
		Redirect: flow.RedirectURI, Next: next, Expires: time.Now().Add(oauthStateTTL).Unix(),
	}
	sealed, err := h.codec.Seal(session.PurposeOAuth, st)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	// Lax, not Strict: the callback is a top-level navigation coming
	// from the provider's site, and must carry this cookie.
	h.setCookie(w, oauthCookie, sealed, oauthStateTTL, http.SameSiteLaxMode)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// loginProblem shows a login failure page and audits it. The message is
// ours (never a provider's raw text).
func (h *Handler) loginProblem(w http.ResponseWriter, r *http.Request, status int, msg, reason, provider string, fields ...zap.Field) error {
	h.audit.Warn("login failed", append(fields, zap.String("provider", provider), zap.String("remote_ip", clientIP(r)), zap.String("reason", reason))...)
	w.Header().Set("Cache-Control", "no-store")
	return h.pages.render(w, status, "error", pageData{Title: "Login failed", Message: msg, Retry: "/hub/login"})
}

// callbackLimits bounds each callback parameter.
var callbackLimits = map[string]int{
	"code": 2048, "state": 256, "error": 128, "error_description": 1024,
	"error_uri": 1024, "iss": 1024, "session_state": 1024, "scope": 1024,
}

// serveOAuthCallback is the redirect URI of every provider.
func (h *Handler) serveOAuthCallback(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on the login callback", r.Method))
	}
	// Whatever happens, the pre-login cookie is used up.
	h.clearCookie(w, oauthCookie)
	if len(r.URL.RawQuery) > maxCallbackQuery {
		return h.loginProblem(w, r, http.StatusRequestURITooLong, "The answer from the identity provider was too large. Start the login again.", "oversized_callback", "")
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return h.loginProblem(w, r, http.StatusBadRequest, "The answer from the identity provider could not be read. Start the login again.", "bad_callback", "")
	}
	for k, vs := range q {
		limit, known := callbackLimits[k]
		if !known {
			limit = 1024
		}
		if len(vs) > 1 || len(vs[0]) > limit {
			return h.loginProblem(w, r, http.StatusBadRequest, "The answer from the identity provider was malformed or too large. Start the login again.", "oversized_callback", "", zap.String("param", sanitizeWord(k)))
		}
	}

	var st oauthState
	c, cerr := r.Cookie(oauthCookie)
	haveState := cerr == nil && h.codec.Open(session.PurposeOAuth, c.Value, &st) == nil
	stateMatches := haveState && q.Get("state") != "" && subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) == 1
	provider := ""
	if stateMatches {
		provider = st.Provider
	}

	if e := q.Get("error"); e != "" {
		if stateMatches {
			h.hub.auth.consumeState(st.State)
		}
		label := ""
		if haveState {
			label = h.providerLabel(st.Provider)
		}
		return h.loginProblem(w, r, http.StatusForbidden, idpErrorMessage(label, e), "idp_error", provider, zap.String("idp_error", sanitizeWord(e)))
	}
	switch {
	case !haveState:
		return h.loginProblem(w, r, http.StatusBadRequest, "This login was not started in this browser, or the browser did not keep its login cookie. Start the login again.", "no_login_state", "")
	case time.Now().Unix() > st.Expires:
		return h.loginProblem(w, r, http.StatusBadRequest, "This login took more than 10 minutes. Start it again.", "login_state_expired", st.Provider)
	case !stateMatches:
		return h.loginProblem(w, r, http.StatusBadRequest, "This answer does not belong to the login started in this browser. Start the login again.", "state_mismatch", st.Provider)
	case !h.hub.auth.consumeState(st.State):
		return h.loginProblem(w, r, http.StatusBadRequest, "This login answer was already used. Start the login again.", "state_replayed", st.Provider)
	}
	p := h.auth.byName[st.Provider]
	if p == nil {
		return h.loginProblem(w, r, http.StatusBadRequest, "The login provider of this login is no longer configured.", "unknown_provider", st.Provider)
	}
	// RFC 9207: a provider that names itself must be the one the login
	// was started with (no mix-up between providers).
	if o, ok := p.(*idp.OIDC); ok && q.Get("iss") != "" && q.Get("iss") != o.Issuer() {
		return h.loginProblem(w, r, http.StatusBadRequest, "The answer came from another identity provider than the one this login was started with.", "issuer_mismatch", st.Provider)
	}
	code := q.Get("code")
	if code == "" {
		return h.loginProblem(w, r, http.StatusBadRequest, "The identity provider sent no authorization code. Start the login again.", "no_code", st.Provider)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	id, err := p.Exchange(ctx, code, idp.Flow{State: st.State, Nonce: st.Nonce, Verifier: st.Verifier, RedirectURI: st.Redirect})
	if err != nil {
		var le *idp.LoginError
		if errors.As(err, &le) {
			return h.loginProblem(w, r, http.StatusForbidden, le.Message, le.Reason, st.Provider, zap.NamedError("cause", le.Err))
		}
		h.logger.Warn("login exchange failed", zap.String("provider", st.Provider), zap.Error(err))
		return h.loginProblem(w, r, http.StatusBadGateway, "The identity provider "+p.Label()+" could not be reached to complete the login. Try again in a minute.", idp.Reason(err), st.Provider)
	}
	return h.completeLogin(w, r, p, id, safeNext(st.Next))
}

func (h *Handler) providerLabel(name string) string {
	if p := h.auth.byName[name]; p != nil {
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
func (h *Handler) completeLogin(w http.ResponseWriter, r *http.Request, p idp.Provider, id *idp.Identity, next string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	fields := []zap.Field{zap.String("user", id.User)}
	if id.GitHubID != 0 {
		fields = append(fields, zap.Int64("github_id", id.GitHubID))
	}
	pol := h.watcher.Current()
	if _, ok := pol.Accounts[id.User]; ok {
		return h.loginProblem(w, r, http.StatusForbidden, "The user name "+strconv.Quote(id.User)+" is a local account of this hub, so it cannot be used through "+p.Label()+". Ask an admin.", "name_is_local_account", id.Provider, fields...)
	}
	ok, bound, err := h.auth.store.Bind(ctx, id.User, bindingProvider(p), id.Subject)
	if err != nil {
		h.logger.Error("user name binding unavailable", append(fields, zap.Error(err))...)
		return h.loginProblem(w, r, http.StatusServiceUnavailable, "The login could not be recorded. Try again in a minute.", "storage_error", id.Provider, fields...)
	}
	if !ok {
		return h.loginProblem(w, r, http.StatusForbidden,
			"The user name "+strconv.Quote(id.User)+" already belongs to another account (its files are kept for that account). "+
				"If your account was renamed, or took over a name someone else used before, ask an admin: they can release the name.",
			"identity_mismatch", id.Provider,
			append(fields, zap.String("subject", id.Subject), zap.String("bound_provider", bound.Provider), zap.String("bound_subject", bound.Subject), zap.String("storage_key", h.auth.store.BindingKey(id.User)))...)
	}
	if id.Token != nil && id.GitHubID != 0 {
		if err := h.auth.store.SaveToken(ctx, id.GitHubID, id.Token); err != nil {
			h.logger.Error("storing the GitHub token failed", append(fields, zap.Error(err))...)
			return h.loginProblem(w, r, http.StatusServiceUnavailable, "The login could not be recorded. Try again in a minute.", "storage_error", id.Provider, fields...)
		}
	}
	now := time.Now()
	s := session.Session{
		ID:        session.NewID(),
		User:      id.User,
		Groups:    id.Groups,
		Provider:  id.Provider,
		IssuedAt:  now.Unix(),
		Expires:   now.Add(time.Duration(h.SessionTTL)).Unix(),
		Subject:   id.Subject,
		GitHubID:  id.GitHubID,
		Name:      id.Name,
		Email:     id.Email,
		CheckedAt: now.Unix(),
	}
	sealed, err := h.sealSession(&s, pol)
	if err != nil {
		return h.loginProblem(w, r, http.StatusForbidden, "Your identity provider lists too many groups for a session cookie. Ask an admin.", "session_too_large", id.Provider, fields...)
	}
	h.setCookie(w, sessionCookie, sealed, time.Duration(h.SessionTTL), http.SameSiteLaxMode)
	if o, ok := p.(*idp.OIDC); ok && id.IDToken != "" && o.EndSessionOrigin(ctx) != "" {
		if v, err := h.codec.Seal(session.PurposeIDToken, idTokenHint{SID: s.ID, Raw: id.IDToken}); err == nil && len(v) <= maxCookieValue {
			h.setCookie(w, idTokenCookie, v, time.Duration(h.SessionTTL), http.SameSiteLaxMode)
		}
	}
	if id.GitHubID != 0 {
		h.hub.auth.setMember(id.GitHubID, id.User, s.Groups, now, s.Expires)
	}
	h.hub.markSeen(id.User)
	h.audit.Info("login", append(fields, zap.String("remote_ip", clientIP(r)), zap.String("provider", id.Provider), zap.Int("groups", len(s.Groups)))...)
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

// idTokenHint is the sealed cookie that keeps the ID token for logout.
type idTokenHint struct {
	SID string `json:"sid"`
	Raw string `json:"t"`
}

// sealSession seals s; when the groups make the cookie too large, only
// the groups the current policy names are kept.
func (h *Handler) sealSession(s *session.Session, pol *policies.Policy) (string, error) {
	sealed, err := h.codec.Seal(session.PurposeSession, s)
	if err != nil || len(sealed) <= maxCookieValue {
		return sealed, err
	}
	var kept []string
	for _, g := range s.Groups {
		if pol.Known("\x00", []string{g}) {
			kept = append(kept, g)
		}
	}
	s.Groups = kept
	sealed, err = h.codec.Seal(session.PurposeSession, s)
	if err != nil {
		return "", err
	}
	if len(sealed) > maxCookieValue {
		return "", errors.New("session cookie too large")
	}
	return sealed, nil
}

// ghMember is the re-check state of one GitHub account seen recently.
type ghMember struct {
	check sync.Mutex // serializes re-checks of this account

	mu       sync.Mutex
	id       int64
	login    string
	groups   []string
	checked  time.Time
	denied   string // why its sessions are no longer accepted
	lastSeen time.Time
	expires  int64
}

// setMember records a fresh login.
func (a *authState) setMember(id int64, login string, groups []string, now time.Time, expires int64) {
	a.ghMu.Lock()
	m := a.members[id]
	if m == nil {
		m = &ghMember{id: id}
		a.members[id] = m
	}
	a.ghMu.Unlock()
	m.mu.Lock()
	m.login, m.groups, m.checked, m.denied, m.lastSeen = login, slices.Clone(groups), now, "", now
	m.expires = max(m.expires, expires)
	m.mu.Unlock()
}

// member returns the state of the session's account, creating it from
// the session when this instance has not seen it yet (after a restart,
// or on another instance); created reports that.
func (a *authState) member(s *session.Session) (m *ghMember, created bool) {
	a.ghMu.RLock()
	m = a.members[s.GitHubID]
	a.ghMu.RUnlock()
	if m != nil {
		return m, false
	}
	a.ghMu.Lock()
	defer a.ghMu.Unlock()
	m = a.members[s.GitHubID]
	if m == nil {
		m = &ghMember{id: s.GitHubID, login: s.User, groups: slices.Clone(s.Groups), checked: time.Unix(s.CheckedAt, 0), expires: s.Expires}
		a.members[s.GitHubID] = m
		created = true
	}
	return m, created
}

// githubSession applies the latest re-check to a GitHub session: its
// groups become the ones read last from GitHub, and it is refused when
// GitHub no longer vouches for it. A session this instance has not seen,
// whose groups are older than the interval, is re-checked first.
func (h *Handler) githubSession(ctx context.Context, s *session.Session) bool {
	if h.auth == nil || h.auth.github == nil {
		return false // GitHub is no longer configured
	}
	m, created := h.hub.auth.member(s)
	now := time.Now()
	m.mu.Lock()
	m.lastSeen = now
	m.expires = max(m.expires, s.Expires)
	stale := now.Sub(m.checked) > h.auth.recheck
	m.mu.Unlock()
	if created && stale {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		h.recheckMember(cctx, m)
		cancel()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.denied != "" || m.login != s.User {
		return false
	}
	if now.Sub(m.checked) > 3*h.auth.recheck+time.Minute {
		// GitHub could not be asked for too long: fail closed on
		// what teams grant, keep what the user name itself grants.
		s.Groups = nil
		return true
	}
	s.Groups = slices.Clone(m.groups)
	return true
}

// recheckLoop re-reads the memberships of the GitHub accounts seen
// recently, every RecheckInterval, until the config is unloaded.
func (h *Handler) recheckLoop(ctx context.Context) {
	tick := min(max(h.auth.recheck/4, 100*time.Millisecond), 30*time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	sem := make(chan struct{}, 4)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var due []*ghMember
		a := h.hub.auth
		a.ghMu.Lock()
		for id, m := range a.members {
			m.mu.Lock()
			gone := now.Unix() > m.expires || now.Sub(m.lastSeen) > time.Duration(h.SessionTTL)
			if gone {
				delete(a.members, id)
			} else if m.denied == "" && now.Sub(m.checked) >= h.auth.recheck {
				due = append(due, m)
			}
			m.mu.Unlock()
		}
		a.ghMu.Unlock()
		var wg sync.WaitGroup
		for _, m := range due {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				h.recheckMember(cctx, m)
			}()
		}
		wg.Wait()
	}
}

// needsRefreshSoon says a token expires within five minutes.
func needsRefreshSoon(tok *oauth2.Token, _ time.Time) bool {
	return !tok.Expiry.IsZero() && time.Until(tok.Expiry) < 5*time.Minute
}

// recheckMember reads one account's memberships again with its stored
// token (refreshed when it is about to expire) and applies the result.
func (h *Handler) recheckMember(ctx context.Context, m *ghMember) {
	m.check.Lock()
	defer m.check.Unlock()
	m.mu.Lock()
	id, login, old := m.id, m.login, slices.Clone(m.groups)
	fresh := time.Since(m.checked) < h.auth.recheck && !m.checked.IsZero()
	denied := m.denied
	m.mu.Unlock()
	if fresh || denied != "" {
		return
	}
	gh := h.auth.github
	fields := []zap.Field{zap.String("user", login), zap.Int64("github_id", id), zap.String("provider", idp.KindGitHub)}
	tok, err := h.auth.store.FreshToken(ctx, id, needsRefreshSoon, gh.Refresh)
	var groups []string
	if err == nil {
		groups, err = gh.Check(ctx, tok.AccessToken, id, login)
	}
	var le *idp.LoginError
	reason := ""
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		reason = "no_stored_token"
	case errors.Is(err, idp.ErrTokenRevoked):
		reason = "github_token_revoked"
	case errors.Is(err, idp.ErrLoginChanged):
		reason = "github_login_changed"
	case errors.As(err, &le):
		reason = le.Reason
	default:
		h.logger.Warn("github membership re-check failed; keeping the last result for now", append(fields, zap.Error(err))...)
		return
	}
	pol := h.watcher.Current()
	m.mu.Lock()
	m.checked = time.Now()
	if reason != "" {
		m.denied = reason
		groups = nil
	} else {
		m.groups = groups
	}
	m.mu.Unlock()

	before, after := pol.Grant(login, old), pol.Grant(login, groups)
	lost := slices.DeleteFunc(slices.Clone(before.Images), func(img string) bool { return slices.Contains(after.Images, img) })
	knownLost := pol.Known(login, old) && !pol.Known(login, groups)
	if reason == "" && len(lost) == 0 && !knownLost {
		return
	}
	if reason == "" {
		reason = "membership_removed"
	}
	closed := h.hub.streams.closeUser(login)
	h.audit.Warn("re-check removed access", append(fields, zap.String("reason", reason), zap.Strings("servers_lost", lost),
		zap.Bool("not_in_policy", !pol.Known(login, groups)), zap.Int("streams_closed", closed))...)
}

// identityEnv sets the git identity of every container and, where the
// policy grants it, the repos to clone and the user's GitHub token.
func (h *Handler) identityEnv(ctx context.Context, s *session.Session, grant policies.Grant, env map[string]string) {
	name := s.Name
	if name == "" {
		name = s.User
	}
	env["GIT_AUTHOR_NAME"], env["GIT_COMMITTER_NAME"] = name, name
	if s.Email != "" {
		env["GIT_AUTHOR_EMAIL"], env["GIT_COMMITTER_EMAIL"] = s.Email, s.Email
	}
	gitURL := idp.DefaultGitHubURL
	if h.auth != nil {
		gitURL = h.auth.gitURL
	}
	if len(grant.Repos) > 0 {
		env["HUBGATE_REPOS"] = strings.Join(grant.Repos, " ")
		env["HUBGATE_GIT_URL"] = gitURL
	}
	if !grant.GitHubToken || s.GitHubID == 0 || h.auth == nil || h.auth.github == nil {
		return
	}
	// A (re)started container gets a fresh token: refreshed unless it
	// was obtained in the last minute.
	fresh := func(tok *oauth2.Token, obtained time.Time) bool {
		return time.Since(obtained) > time.Minute || needsRefreshSoon(tok, obtained)
	}
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tok, err := h.auth.store.FreshToken(tctx, s.GitHubID, fresh, h.auth.github.Refresh)
	if err != nil {
		h.logger.Warn("no GitHub token for the container; repos that need it will not clone", zap.String("user", s.User), zap.Error(err))
		return
	}
	env["GITHUB_TOKEN"] = tok.AccessToken
}
