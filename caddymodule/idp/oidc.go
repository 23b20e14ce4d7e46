package idp

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hubgate/hubgate/policies/username"
)

// OIDCOptions configures an OpenID Connect provider.
type OIDCOptions struct {
	// Name is the provider's configured name.
	Name string
	// Issuer is the issuer URL; discovery reads
	// Issuer/.well-known/openid-configuration and ID tokens must name it.
	Issuer string
	// ClientID and ClientSecret are the client's credentials.
	ClientID     string
	ClientSecret string
	// Scopes are requested; "openid" is added when missing.
	Scopes []string
	// UsernameClaim names the claim that becomes the user name.
	UsernameClaim string
	// GroupsClaim names the claim whose values become "oidc:" groups; empty
	// means no groups.
	GroupsClaim string
	// RequireEmailVerified refuses logins without a verified email.
	RequireEmailVerified bool
	// Label is the login button's text.
	Label string
	// Timeout bounds each call to the provider. Default: DefaultTimeout.
	Timeout time.Duration
	// HTTPClient, if set, replaces the default client.
	HTTPClient *http.Client
	// Now, if set, replaces the clock for ID token expiry checks (tests).
	Now func() time.Time
	// UsernamePrefix is put before every user name from this provider.
	UsernamePrefix string
	// BareGroups also gives the provider's groups without its name
	// ("oidc:<group>"), for a gateway with exactly this one OIDC provider.
	BareGroups bool
}

// discoveryRetry is how long a failed discovery is remembered before the
// next login tries again, so an unreachable provider is not hammered.
const discoveryRetry = 5 * time.Second

// maxGroups bounds the groups taken from one login.
const maxGroups = 256

// OIDC is an OpenID Connect provider. Discovery happens lazily, on the
// first login (so a provider that is down does not stop Caddy from
// loading its config), and its result is cached.
type OIDC struct {
	o      OIDCOptions
	client *http.Client

	mu         sync.Mutex
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	endSession string
	lastErr    error
	lastTry    time.Time
}

// NewOIDC returns the provider; it makes no network call.
func NewOIDC(o OIDCOptions) *OIDC {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.UsernameClaim == "" {
		o.UsernameClaim = "preferred_username"
	}
	hasOpenID := false
	for _, s := range o.Scopes {
		hasOpenID = hasOpenID || s == oidc.ScopeOpenID
	}
	if !hasOpenID {
		o.Scopes = append([]string{oidc.ScopeOpenID}, o.Scopes...)
	}
	c := o.HTTPClient
	if c == nil {
		c = NewHTTPClient(o.Timeout)
	}
	return &OIDC{o: o, client: c}
}

// Name implements Provider.
func (p *OIDC) Name() string { return p.o.Name }

// Kind implements Provider.
func (p *OIDC) Kind() string { return KindOIDC }

// Label implements Provider.
func (p *OIDC) Label() string { return p.o.Label }

// Issuer returns the configured issuer URL.
func (p *OIDC) Issuer() string { return p.o.Issuer }

// discover returns the provider's metadata, running discovery once.
func (p *OIDC) discover(ctx context.Context) (*oidc.Provider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.provider != nil {
		return p.provider, nil
	}
	if p.lastErr != nil && time.Since(p.lastTry) < discoveryRetry {
		return nil, p.lastErr
	}
	ctx, cancel := context.WithTimeout(ctx, p.o.Timeout)
	defer cancel()
	prov, err := oidc.NewProvider(oidc.ClientContext(ctx, p.client), p.o.Issuer)
	p.lastTry = time.Now()
	if err != nil {
		p.lastErr = fmt.Errorf("%w: discovery of %s: %v", ErrUnavailable, p.o.Issuer, err)
		return nil, p.lastErr
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = prov.Claims(&extra)
	if extra.EndSession != "" && CheckProviderURL("end_session_endpoint", stripQuery(extra.EndSession)) == nil {
		p.endSession = extra.EndSession
	}
	p.provider = prov
	p.verifier = prov.VerifierContext(oidc.ClientContext(context.Background(), p.client), &oidc.Config{ClientID: p.o.ClientID, Now: p.o.Now})
	p.lastErr = nil
	return prov, nil
}

func stripQuery(raw string) string {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		return raw[:i]
	}
	return raw
}

func (p *OIDC) config(prov *oidc.Provider, redirectURI string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.o.ClientID,
		ClientSecret: p.o.ClientSecret,
		Endpoint:     prov.Endpoint(),
		RedirectURL:  redirectURI,
		Scopes:       p.o.Scopes,
	}
}

// AuthCodeURL implements Provider: the authorization request carries the
// state, the nonce and the PKCE S256 challenge.
func (p *OIDC) AuthCodeURL(ctx context.Context, f Flow) (string, error) {
	prov, err := p.discover(ctx)
	if err != nil {
		return "", err
	}
	return p.config(prov, f.RedirectURI).AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)), nil
}

// Exchange implements Provider: it redeems the code with the PKCE
// verifier, verifies the ID token (signature, issuer, audience, expiry,
// nonce, at_hash), reads missing claims from the userinfo endpoint and
// maps the claims to an Identity.
func (p *OIDC) Exchange(ctx context.Context, code string, f Flow) (*Identity, error) {
	prov, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.o.Timeout)
	defer cancel()
	ctx = context.WithValue(oidc.ClientContext(ctx, p.client), oauth2.HTTPClient, p.client)
	tok, err := p.config(prov, f.RedirectURI).Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return nil, exchangeError(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, refuse("no_id_token", "The identity provider sent no ID token.", nil)
	}
	idt, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, idTokenError(err)
	}
	if idt.Nonce == "" || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return nil, refuse("nonce_mismatch", "The identity provider's answer does not belong to this login. Please try again.", nil)
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, refuse("at_hash_mismatch", "The identity provider's answer is inconsistent. Please try again.", err)
		}
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, refuse("id_token_invalid", "The identity provider's ID token could not be read.", err)
	}
	if p.needsUserInfo(claims) && prov.UserInfoEndpoint() != "" {
		ui, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		switch {
		case err != nil && claims[p.o.UsernameClaim] == nil && claims["email"] == nil:
			return nil, fmt.Errorf("%w: userinfo: %v", ErrUnavailable, err)
		case err != nil:
			// The ID token names the user; the extra claims are missed.
		case ui.Subject != idt.Subject:
			return nil, refuse("userinfo_subject_mismatch", "The identity provider's answer is inconsistent. Please try again.", nil)
		default:
			more := map[string]any{}
			if err := ui.Claims(&more); err == nil {
				for k, v := range more {
					if _, ok := claims[k]; !ok {
						claims[k] = v
					}
				}
			}
		}
	}
	id, err := p.identity(idt.Subject, claims)
	if err != nil {
		return nil, err
	}
	id.IDToken = raw
	return id, nil
}

func (p *OIDC) needsUserInfo(claims map[string]any) bool {
	for _, c := range []string{p.o.UsernameClaim, "email", "email_verified", p.o.GroupsClaim} {
		if c == "" {
			continue
		}
		if _, ok := claims[c]; !ok {
			return true
		}
	}
	return false
}

// identity maps verified claims to an Identity.
func (p *OIDC) identity(subject string, claims map[string]any) (*Identity, error) {
	if subject == "" {
		return nil, refuse("no_subject", "The identity provider's ID token names no subject.", nil)
	}
	email := stringClaim(claims["email"])
	verified := boolClaim(claims["email_verified"])
	if p.o.RequireEmailVerified && (email == "" || !verified) {
		return nil, refuse("email_not_verified", "Your email address is not verified at the identity provider. Verify it there, then log in again.", nil)
	}
	raw := strings.TrimSpace(stringClaim(claims[p.o.UsernameClaim]))
	if raw == "" && email != "" && verified {
		raw = SanitizeEmail(email)
	}
	if raw == "" {
		return nil, refuse("no_username", fmt.Sprintf("The identity provider gave no user name (claim %q) and no verified email address.", p.o.UsernameClaim), nil)
	}
	user, err := username.Canonical(p.o.UsernamePrefix + raw)
	if err != nil {
		return nil, refuse("bad_username", "The user name given by the identity provider cannot be used here: "+err.Error()+".", err)
	}
	id := &Identity{
		Provider: p.o.Name,
		Kind:     KindOIDC,
		Subject:  subject,
		User:     user,
		Name:     sanitizeText(stringClaim(claims["name"]), 128),
	}
	if verified {
		id.Email = SanitizeEmail(email)
	}
	if p.o.GroupsClaim != "" {
		id.Groups = oidcGroups(claims[p.o.GroupsClaim], p.o.Name, p.o.BareGroups)
	}
	return id, nil
}

// oidcGroups turns a groups claim (a list of strings, or one string) into
// policy groups "oidc:<provider>/<value>" (and, with bare, also
// "oidc:<value>"), dropping values with white space or control characters.
// The provider's name keeps one provider's groups from granting what
// another provider's groups of the same name grant.
func oidcGroups(v any, provider string, bare bool) []string {
	var vals []string
	switch g := v.(type) {
	case string:
		vals = []string{g}
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				vals = append(vals, s)
			}
		}
	case []string:
		vals = g
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range vals {
		s = strings.TrimSpace(s)
		if s == "" || len(s) > 200 || strings.IndexFunc(s, badGroupRune) >= 0 || seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, "oidc:"+provider+"/"+s)
		if bare {
			out = append(out, "oidc:"+s)
		}
		if len(out) >= maxGroups {
			break
		}
	}
	return out
}

func badGroupRune(r rune) bool {
	return r <= ' ' || r == 0x7f || r == '\uFFFD'
}

func stringClaim(v any) string {
	s, _ := v.(string)
	return s
}

// boolClaim reads a boolean claim; some providers send "true" as a string.
func boolClaim(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return b == "true"
	}
	return false
}

// exchangeError classifies a failed code exchange without echoing the
// provider's raw body.
func exchangeError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		code := re.ErrorCode
		if code == "" && re.Response != nil {
			code = fmt.Sprintf("http %d", re.Response.StatusCode)
		}
		cause := fmt.Errorf("token endpoint refused: %s", code)
		if re.Response != nil && re.Response.StatusCode >= 500 {
			return fmt.Errorf("%w: %v", ErrUnavailable, cause)
		}
		return refuse("token_exchange_failed", "The identity provider refused to complete the login. Please try again.", cause)
	}
	return fmt.Errorf("%w: token exchange: %v", ErrUnavailable, err)
}

func idTokenError(err error) error {
	var exp *oidc.TokenExpiredError
	switch {
	case errors.As(err, &exp):
		return refuse("id_token_expired", "The identity provider's ID token has expired. Please log in again.", err)
	case strings.Contains(err.Error(), "audience"):
		return refuse("id_token_audience", "The identity provider's ID token was issued for another application.", err)
	case strings.Contains(err.Error(), "issued by a different provider"):
		return refuse("id_token_issuer", "The ID token was issued by another provider.", err)
	}
	return refuse("id_token_invalid", "The identity provider's ID token could not be verified.", err)
}

// EndSessionURL returns the provider's RP-initiated logout URL with the
// id_token_hint (when given), the client_id and post_logout_redirect_uri,
// or "" when the provider advertises no end_session_endpoint.
func (p *OIDC) EndSessionURL(ctx context.Context, idTokenHint, postLogoutRedirect string) string {
	if _, err := p.discover(ctx); err != nil {
		return ""
	}
	if p.endSession == "" {
		return ""
	}
	u, err := url.Parse(p.endSession)
	if err != nil {
		return ""
	}
	q := u.Query()
	if idTokenHint != "" {
		q.Set("id_token_hint", idTokenHint)
	}
	q.Set("client_id", p.o.ClientID)
	q.Set("post_logout_redirect_uri", postLogoutRedirect)
	u.RawQuery = q.Encode()
	return u.String()
}

// EndSessionOrigin returns the scheme and host of the end_session_endpoint
// ("" when there is none), for the logout form's Content-Security-Policy.
func (p *OIDC) EndSessionOrigin(ctx context.Context) string {
	if _, err := p.discover(ctx); err != nil || p.endSession == "" {
		return ""
	}
	u, err := url.Parse(p.endSession)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
