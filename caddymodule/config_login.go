// This file holds the login part of the configuration: the identity
// providers, local accounts and the identity assertion, their defaults,
// validation and Caddyfile syntax.

package caddymodule

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/hubgate/hubgate/caddymodule/idp"
	"github.com/hubgate/hubgate/caddymodule/login"
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

	// UsernamePrefix is put before every user name from this provider
	// (such as "uni-" for "uni-alice"), so that providers cannot take each
	// other's names. With several external providers, at most one may
	// give bare names (GitHub always does); the others need a prefix.
	// Lower-case letters, digits, '.' and '-'.
	UsernamePrefix string `json:"username_prefix,omitempty"`
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

const providerLocal = "local"

var providerNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}$`)

// prefixRE is the shape of a username_prefix.
var prefixRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,15}$`)

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
			g.RecheckInterval = caddy.Duration(login.DefaultRecheckInterval)
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
	bare := []string{}
	if h.GitHub != nil {
		bare = append(bare, "github")
	}
	for _, c := range h.OIDC {
		if c == nil {
			continue
		}
		if c.UsernamePrefix == "" {
			bare = append(bare, "oidc "+c.Name)
		} else if !prefixRE.MatchString(c.UsernamePrefix) {
			return fmt.Errorf("hubgate: oidc provider %q: username_prefix %q must be lower-case letters, digits, '.' and '-'", c.Name, c.UsernamePrefix)
		}
	}
	if len(bare) > 1 {
		return fmt.Errorf("hubgate: %s all give bare user names, so a user of one could take a name that belongs to a user of another: give the others a username_prefix (only one provider may give bare names; GitHub's always are)", strings.Join(bare, ", "))
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

// buildProviders builds the identity providers (no network call: OIDC
// discovery happens on the first login), replacing placeholders in
// secrets and URLs.
func (h *Handler) buildProviders() ([]idp.Provider, error) {
	repl := caddy.NewReplacer()
	var providers []idp.Provider
	for _, c := range h.OIDC {
		issuer := repl.ReplaceAll(c.Issuer, "")
		if err := idp.CheckProviderURL("oidc "+c.Name+" issuer", issuer); err != nil {
			return nil, fmt.Errorf("hubgate: %w", err)
		}
		secret := repl.ReplaceAll(c.ClientSecret, "")
		if c.ClientSecret != "" && secret == "" {
			return nil, fmt.Errorf("hubgate: oidc provider %q: client_secret is empty once its placeholders are replaced (is the environment variable set?)", c.Name)
		}
		providers = append(providers, idp.NewOIDC(idp.OIDCOptions{
			Name:                 c.Name,
			Issuer:               issuer,
			ClientID:             repl.ReplaceAll(c.ClientID, ""),
			ClientSecret:         secret,
			Scopes:               slices.Clone(c.Scopes),
			UsernameClaim:        c.UsernameClaim,
			GroupsClaim:          c.GroupsClaim,
			RequireEmailVerified: c.RequireEmailVerified,
			Label:                c.Label,
			BareGroups:           len(h.OIDC) == 1,
			UsernamePrefix:       c.UsernamePrefix,
		}))
	}
	if g := h.GitHub; g != nil {
		u, api := repl.ReplaceAll(g.URL, ""), repl.ReplaceAll(g.APIURL, "")
		for _, x := range []struct{ field, v string }{{"github url", u}, {"github api_url", api}} {
			if err := idp.CheckProviderURL(x.field, x.v); err != nil {
				return nil, fmt.Errorf("hubgate: %w", err)
			}
		}
		secret := repl.ReplaceAll(g.ClientSecret, "")
		if g.ClientSecret != "" && secret == "" {
			return nil, errors.New("hubgate: github: client_secret is empty once its placeholders are replaced (is the environment variable set?)")
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
			return nil, fmt.Errorf("hubgate: %w", err)
		}
		providers = append(providers, p)
	}
	return providers, nil
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
//		username_prefix <prefix>
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
			case "username_prefix":
				err = oneArg(d, &c.UsernamePrefix)
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

// AssertionConfig turns on the signed identity assertion: every request
// proxied to a user's server carries a short-lived JWT (ES256) saying who
// the gateway says the user is. Apps verify it with the public keys at
// /hub/.well-known/jwks.json. Its claims: iss (https://<site>), sub (the
// user name), name, email (when verified), groups (the identity provider
// groups), aud (the server's key, such as "notebook"), iat and exp.
type AssertionConfig struct {
	// Header is the request header that carries the JWT. A client can
	// never set it: it is removed from every proxied request first.
	// Default: "X-Hubgate-Assertion".
	Header string `json:"header,omitempty"`

	// TTL is how long an assertion is valid. Default: 60s.
	TTL caddy.Duration `json:"ttl,omitempty"`
}

const (
	defaultAssertionHeader = "X-Hubgate-Assertion"
	defaultAssertionTTL    = 60 * time.Second
)

var headerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)

func validateAssertionHeader(name string) error {
	if !headerNameRE.MatchString(name) {
		return fmt.Errorf("hubgate: assertion header %q is not a header name", name)
	}
	switch strings.ToLower(name) {
	case "authorization", "cookie", "host", "connection", "upgrade", "te", "trailer", "transfer-encoding",
		"content-length", "content-type", "x-hubgate-user", "proxy-authorization", "keep-alive":
		return fmt.Errorf("hubgate: assertion header %q is reserved", name)
	}
	return nil
}
