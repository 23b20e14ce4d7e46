package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/hubgate/hubgate/policies/username"
)

// GitHub defaults.
const (
	DefaultGitHubURL    = "https://github.com"
	DefaultGitHubAPIURL = "https://api.github.com"
	githubAPIVersion    = "2022-11-28"
	maxPages            = 10
)

// DefaultGitHubScopes lets hubgate read the user's verified emails and
// their org and team memberships.
var DefaultGitHubScopes = []string{"read:org", "user:email"}

// Errors of a membership re-check.
var (
	// ErrTokenRevoked means GitHub no longer accepts the user's token
	// (revoked, expired without a usable refresh token, app uninstalled).
	ErrTokenRevoked = errors.New("github token no longer accepted")
	// ErrLoginChanged means the token's account now has another login or
	// id than the session was made for (renamed, or a different account).
	ErrLoginChanged = errors.New("github account changed its login")
)

// GitHubOptions configures GitHub OAuth (github.com or GitHub Enterprise).
type GitHubOptions struct {
	ClientID     string
	ClientSecret string
	// URL is GitHub's web address, where /login/oauth/* live.
	URL string
	// APIURL is the REST API's base address.
	APIURL string
	// Orgs, if not empty, is the allow-list: only members of at least one
	// of these orgs may log in, and only their groups are kept.
	Orgs []string
	// Scopes are requested from OAuth apps (not from GitHub Apps).
	Scopes []string
	// AppTokens says the client is a GitHub App: no scopes are sent, and
	// user tokens are expected to expire and come with refresh tokens.
	AppTokens bool
	Label     string
	Timeout   time.Duration
	// HTTPClient, if set, replaces the default client.
	HTTPClient *http.Client
}

// GitHub logs people in with GitHub OAuth and reads their memberships.
type GitHub struct {
	o      GitHubOptions
	client *http.Client
	conf   oauth2.Config
	api    *url.URL
}

// NewGitHub returns the provider; it makes no network call.
func NewGitHub(o GitHubOptions) (*GitHub, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.URL == "" {
		o.URL = DefaultGitHubURL
	}
	if o.APIURL == "" {
		o.APIURL = DefaultGitHubAPIURL
	}
	o.URL = strings.TrimSuffix(o.URL, "/")
	o.APIURL = strings.TrimSuffix(o.APIURL, "/")
	if o.Scopes == nil {
		o.Scopes = DefaultGitHubScopes
	}
	for i, org := range o.Orgs {
		o.Orgs[i] = strings.ToLower(org)
	}
	api, err := url.Parse(o.APIURL)
	if err != nil {
		return nil, fmt.Errorf("github api_url: %w", err)
	}
	base := o.HTTPClient
	if base == nil {
		base = NewHTTPClient(o.Timeout)
	}
	// GitHub answers the token endpoint form-encoded unless asked for
	// JSON; ask for JSON, as its documentation recommends.
	client := *base
	inner := client.Transport
	if inner == nil {
		inner = http.DefaultTransport
	}
	client.Transport = acceptJSON{inner}
	scopes := o.Scopes
	if o.AppTokens {
		scopes = nil
	}
	g := &GitHub{
		o:      o,
		client: &client,
		api:    api,
		conf: oauth2.Config{
			ClientID:     o.ClientID,
			ClientSecret: o.ClientSecret,
			Scopes:       scopes,
			Endpoint: oauth2.Endpoint{
				AuthURL:   o.URL + "/login/oauth/authorize",
				TokenURL:  o.URL + "/login/oauth/access_token",
				AuthStyle: oauth2.AuthStyleInParams,
			},
		},
	}
	return g, nil
}

type acceptJSON struct{ rt http.RoundTripper }

func (a acceptJSON) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && r.Header.Get("Accept") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Accept", "application/json")
	}
	return a.rt.RoundTrip(r)
}

// Name implements Provider; a GitHub provider is always called "github".
func (g *GitHub) Name() string { return KindGitHub }

// Kind implements Provider.
func (g *GitHub) Kind() string { return KindGitHub }

// Label implements Provider.
func (g *GitHub) Label() string { return g.o.Label }

// URL returns GitHub's web address (for git remotes).
func (g *GitHub) URL() string { return g.o.URL }

// AuthCodeURL implements Provider. GitHub has no nonce; state and PKCE
// (S256) protect the flow.
func (g *GitHub) AuthCodeURL(_ context.Context, f Flow) (string, error) {
	cfg := g.conf
	cfg.RedirectURL = f.RedirectURI
	return cfg.AuthCodeURL(f.State, oauth2.S256ChallengeOption(f.Verifier)), nil
}

func (g *GitHub) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, g.o.Timeout)
	return context.WithValue(ctx, oauth2.HTTPClient, g.client), cancel
}

// Exchange implements Provider: it redeems the code, then reads the user,
// their primary verified email and their org and team memberships.
func (g *GitHub) Exchange(ctx context.Context, code string, f Flow) (*Identity, error) {
	cctx, cancel := g.ctx(ctx)
	defer cancel()
	cfg := g.conf
	cfg.RedirectURL = f.RedirectURI
	tok, err := cfg.Exchange(cctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return nil, exchangeError(err)
	}
	u, err := g.user(ctx, tok.AccessToken)
	if err != nil {
		return nil, err
	}
	groups, err := g.memberships(ctx, tok.AccessToken, u.Login)
	if err != nil {
		return nil, err
	}
	email, err := g.primaryEmail(ctx, tok.AccessToken)
	if err != nil {
		return nil, err
	}
	if email == "" {
		email = g.noReplyEmail(u.ID, u.Login)
	}
	return &Identity{
		Provider: KindGitHub,
		Kind:     KindGitHub,
		Subject:  strconv.FormatInt(u.ID, 10),
		User:     u.Login,
		Name:     sanitizeText(u.Name, 128),
		Email:    email,
		Groups:   groups,
		GitHubID: u.ID,
		Token:    tok,
	}, nil
}

// Check re-reads the memberships of the account behind token, which must
// still be the account with the given id and login. It returns the
// current groups; ErrTokenRevoked, ErrLoginChanged, a *LoginError (no
// longer in an allowed org) or an ErrUnavailable error otherwise.
func (g *GitHub) Check(ctx context.Context, token string, id int64, login string) ([]string, error) {
	u, err := g.user(ctx, token)
	if err != nil {
		return nil, err
	}
	if u.ID != id || !strings.EqualFold(u.Login, login) {
		return nil, ErrLoginChanged
	}
	return g.memberships(ctx, token, u.Login)
}

// Refresh trades the refresh token of tok for a new token. GitHub rotates
// refresh tokens: the returned token carries the new one.
func (g *GitHub) Refresh(ctx context.Context, tok *oauth2.Token) (*oauth2.Token, error) {
	if tok == nil || tok.RefreshToken == "" {
		return nil, errors.New("no refresh token")
	}
	cctx, cancel := g.ctx(ctx)
	defer cancel()
	nt, err := g.conf.TokenSource(cctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode != "" {
			return nil, fmt.Errorf("%w: refresh refused: %s", ErrTokenRevoked, re.ErrorCode)
		}
		return nil, fmt.Errorf("%w: refresh: %v", ErrUnavailable, safeErr(err))
	}
	return nt, nil
}

// safeErr drops the body oauth2 may quote in its errors.
func safeErr(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return fmt.Errorf("http %d", re.Response.StatusCode)
	}
	return err
}

type ghUser struct {
	Login string `json:"login"`
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Type  string `json:"type"`
}

func (g *GitHub) user(ctx context.Context, token string) (*ghUser, error) {
	var u ghUser
	st, err := g.get(ctx, token, "/user", &u)
	if err != nil {
		return nil, err
	}
	if st != http.StatusOK || u.ID == 0 || u.Login == "" {
		return nil, fmt.Errorf("%w: GET /user: status %d", ErrUnavailable, st)
	}
	name, err := username.Canonical(u.Login)
	if err != nil {
		return nil, refuse("bad_username", "Your GitHub login cannot be used as a user name here: "+err.Error()+".", err)
	}
	u.Login = name
	return &u, nil
}

func (g *GitHub) primaryEmail(ctx context.Context, token string) (string, error) {
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	st, err := g.get(ctx, token, "/user/emails", &emails)
	if err != nil {
		return "", err
	}
	if st != http.StatusOK {
		// No user:email scope (or a GitHub App without the email
		// permission): fall back to the no-reply address.
		return "", nil
	}
	for _, e := range emails {
		if e.Primary && e.Verified {
			return SanitizeEmail(e.Email), nil
		}
	}
	return "", nil
}

// noReplyEmail is GitHub's documented private address of an account.
func (g *GitHub) noReplyEmail(id int64, login string) string {
	host := "github.com"
	if u, err := url.Parse(g.o.URL); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	return fmt.Sprintf("%d+%s@users.noreply.%s", id, strings.ToLower(login), host)
}

// memberships returns the "github:org" and "github:org/team" groups of the
// user, restricted to the allowed orgs when an allow-list is configured
// (and then refusing a user who is in none of them).
func (g *GitHub) memberships(ctx context.Context, token, login string) ([]string, error) {
	var teams []struct {
		Slug         string `json:"slug"`
		Organization struct {
			Login string `json:"login"`
		} `json:"organization"`
	}
	if err := g.list(ctx, token, "/user/teams", &teams); err != nil {
		return nil, err
	}
	var orgs []struct {
		Login string `json:"login"`
	}
	if err := g.list(ctx, token, "/user/orgs", &orgs); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	allowed := func(org string) bool { return len(g.o.Orgs) == 0 || slices.Contains(g.o.Orgs, org) }
	for _, t := range teams {
		org := strings.ToLower(t.Organization.Login)
		slug := strings.ToLower(t.Slug)
		if org == "" || slug == "" || !allowed(org) {
			continue
		}
		set["github:"+org] = true
		set["github:"+org+"/"+slug] = true
	}
	for _, o := range orgs {
		if org := strings.ToLower(o.Login); org != "" && allowed(org) {
			set["github:"+org] = true
		}
	}
	if len(g.o.Orgs) > 0 {
		member := false
		for _, org := range g.o.Orgs {
			ok, err := g.isMember(ctx, token, org, login)
			if err != nil {
				return nil, err
			}
			if ok {
				member = true
				set["github:"+org] = true
			} else {
				// Not a member (any more): drop what the lists said.
				for k := range set {
					if k == "github:"+org || strings.HasPrefix(k, "github:"+org+"/") {
						delete(set, k)
					}
				}
			}
		}
		if !member {
			return nil, refuse("org_not_allowed", "Your GitHub account is not a member of an organization allowed to use this hub.", nil)
		}
	}
	groups := make([]string, 0, len(set))
	for k := range set {
		groups = append(groups, k)
	}
	slices.Sort(groups)
	if len(groups) > maxGroups {
		groups = groups[:maxGroups]
	}
	return groups, nil
}

// isMember asks GET /orgs/{org}/members/{username}: 204 is a member; 404
// is not; 302 means the requester is not a member, so neither are they.
func (g *GitHub) isMember(ctx context.Context, token, org, login string) (bool, error) {
	st, err := g.get(ctx, token, "/orgs/"+url.PathEscape(org)+"/members/"+url.PathEscape(login), nil)
	if err != nil {
		return false, err
	}
	switch st {
	case http.StatusNoContent:
		return true, nil
	case http.StatusNotFound, http.StatusFound, http.StatusForbidden:
		return false, nil
	}
	return false, fmt.Errorf("%w: membership of %s: status %d", ErrUnavailable, org, st)
}

// list reads every page of a list endpoint (at most maxPages pages of
// 100), following the Link header only to the API's own host.
func (g *GitHub) list(ctx context.Context, token, path string, into any) error {
	next := g.o.APIURL + path + "?per_page=100"
	var all []json.RawMessage
	for page := 0; next != "" && page < maxPages; page++ {
		var items []json.RawMessage
		st, link, err := g.do(ctx, token, next, &items)
		if err != nil {
			return err
		}
		if st == http.StatusNotFound || st == http.StatusForbidden {
			// The token may not read this (scope or app permission
			// missing): no memberships from here.
			break
		}
		if st != http.StatusOK {
			return fmt.Errorf("%w: GET %s: status %d", ErrUnavailable, path, st)
		}
		all = append(all, items...)
		next = g.sameHost(nextLink(link))
	}
	b, err := json.Marshal(all)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}

func (g *GitHub) sameHost(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != g.api.Scheme || u.Host != g.api.Host {
		return ""
	}
	return raw
}

// nextLink returns the rel="next" URL of a Link header.
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		segs := strings.Split(part, ";")
		if len(segs) < 2 {
			continue
		}
		target := strings.Trim(strings.TrimSpace(segs[0]), "<>")
		for _, p := range segs[1:] {
			if strings.ReplaceAll(strings.TrimSpace(p), " ", "") == `rel="next"` {
				return target
			}
		}
	}
	return ""
}

func (g *GitHub) get(ctx context.Context, token, path string, into any) (int, error) {
	st, _, err := g.do(ctx, token, g.o.APIURL+path, into)
	return st, err
}

// do sends an authenticated GET to the API and decodes a 200 answer into
// into. 401 is ErrTokenRevoked; a rate limit or 5xx is ErrUnavailable.
func (g *GitHub) do(ctx context.Context, token, rawURL string, into any) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, g.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", githubAPIVersion)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("User-Agent", "hubgate")
	client := *g.client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%w: GET %s: %v", ErrUnavailable, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, "", fmt.Errorf("%w: GET %s: %v", ErrUnavailable, req.URL.Path, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return resp.StatusCode, "", ErrTokenRevoked
	case resp.StatusCode == http.StatusTooManyRequests,
		resp.StatusCode == http.StatusForbidden && resp.Header.Get("X-RateLimit-Remaining") == "0",
		resp.StatusCode >= 500:
		return resp.StatusCode, "", fmt.Errorf("%w: GET %s: status %d", ErrUnavailable, req.URL.Path, resp.StatusCode)
	case resp.StatusCode == http.StatusOK && into != nil:
		if err := json.Unmarshal(body, into); err != nil {
			return resp.StatusCode, "", fmt.Errorf("%w: GET %s: bad JSON: %v", ErrUnavailable, req.URL.Path, err)
		}
	}
	return resp.StatusCode, resp.Header.Get("Link"), nil
}
