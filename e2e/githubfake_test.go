package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ghFake is the local stand-in for GitHub: the OAuth web flow
// (/login/oauth/authorize, /login/oauth/access_token) and the REST
// endpoints hubgate reads (/user, /user/emails, /user/teams, /user/orgs,
// /orgs/{org}/members/{username}), with GitHub's documented shapes,
// status codes and headers. It serves both the web and the API address
// (as GitHub Enterprise Server does, with the API under /api/v3).
//
// The person "signed in at GitHub" is set with as(); authorization is
// approved at once, or denied with deny().
type ghFake struct {
	t            testing.TB
	srv          *httptest.Server
	clientID     string
	clientSecret string

	mu        sync.Mutex
	callback  string // the app's registered callback URL
	users     map[int64]*ghAccount
	signedIn  int64
	denied    bool
	expiring  time.Duration // user tokens expire after this (0: never)
	codes     map[string]*ghCode
	tokens    map[string]*ghToken // access token -> grant
	refresh   map[string]*ghToken // refresh token -> grant
	refreshes int
	perPage   int // page size cap, to exercise pagination
	issued    []string
}

type ghAccount struct {
	id     int64
	login  string
	name   string
	emails []ghEmail
	orgs   []string // org logins
	teams  []string // "org/slug"
}

type ghEmail struct {
	Email      string  `json:"email"`
	Primary    bool    `json:"primary"`
	Verified   bool    `json:"verified"`
	Visibility *string `json:"visibility"`
}

type ghCode struct {
	user      int64
	redirect  string
	challenge string
	scope     string
	expires   time.Time
	used      bool
}

type ghToken struct {
	user    int64
	scope   string
	expires time.Time
	refresh string
	revoked bool
}

func newGHFake(t testing.TB) *ghFake {
	f := &ghFake{
		t:            t,
		clientID:     "Ov23liFakeClientID01",
		clientSecret: "fake-github-client-secret-0123456789abcdef",
		users:        map[int64]*ghAccount{},
		codes:        map[string]*ghCode{},
		tokens:       map[string]*ghToken{},
		refresh:      map[string]*ghToken{},
		perPage:      100,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", f.authorize)
	mux.HandleFunc("POST /login/oauth/access_token", f.accessToken)
	for _, prefix := range []string{"", "/api/v3"} {
		mux.HandleFunc("GET "+prefix+"/user", f.api(f.user))
		mux.HandleFunc("GET "+prefix+"/user/emails", f.api(f.emails))
		mux.HandleFunc("GET "+prefix+"/user/teams", f.api(f.userTeams))
		mux.HandleFunc("GET "+prefix+"/user/orgs", f.api(f.userOrgs))
		mux.HandleFunc("GET "+prefix+"/orgs/{org}/members/{username}", f.api(f.orgMember))
	}
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// env is what a gateway needs to use this stand-in.
func (f *ghFake) env() map[string]string {
	return map[string]string{
		"HUBGATE_GITHUB_CLIENT_ID":     f.clientID,
		"HUBGATE_GITHUB_CLIENT_SECRET": f.clientSecret,
		"HUBGATE_GITHUB_URL":           f.srv.URL,
		"HUBGATE_GITHUB_API_URL":       f.srv.URL + "/api/v3",
	}
}

// register sets the app's callback URL, as on GitHub's app settings page.
func (f *ghFake) register(g *gateway) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.callback = g.url("/hub/oauth_callback")
}

func (f *ghFake) addUser(a *ghAccount) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users[a.id] = a
}

// as makes the account with this id the one signed in at GitHub.
func (f *ghFake) as(id int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signedIn, f.denied = id, false
}

// deny makes the next authorizations end with access_denied.
func (f *ghFake) deny() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.denied = true
}

func (f *ghFake) edit(id int64, fn func(a *ghAccount)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.users[id])
}

// valid reports whether GitHub would accept this access token now.
func (f *ghFake) valid(tok string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.tokens[tok]
	return g != nil && !g.revoked && (g.expires.IsZero() || time.Now().Before(g.expires))
}

func (f *ghFake) tokenOwner(tok string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g := f.tokens[tok]; g != nil {
		return g.user
	}
	return 0
}

func (f *ghFake) refreshCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes
}

func (f *ghFake) issuedTokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.issued)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// authorize is GET /login/oauth/authorize: the user (already signed in)
// approves at once, and GitHub redirects to the callback with code and
// state, or with error=access_denied; an unknown client is a 404 page and
// a redirect_uri outside the registered callback is
// error=redirect_uri_mismatch, sent to the registered callback.
func (f *ghFake) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	defer f.mu.Unlock()
	if q.Get("client_id") != f.clientID {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	state := q.Get("state")
	redirect := q.Get("redirect_uri")
	if redirect == "" {
		redirect = f.callback
	}
	if !withinCallback(redirect, f.callback) {
		f.redirectError(w, r, f.callback, state, "redirect_uri_mismatch",
			"The redirect_uri MUST match the registered callback URL for this application.",
			"https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#redirect-uri-mismatch")
		return
	}
	if f.denied {
		f.redirectError(w, r, redirect, state, "access_denied",
			"The user has denied your application access.",
			"https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied")
		return
	}
	if m := q.Get("code_challenge_method"); q.Get("code_challenge") != "" && m != "S256" {
		http.Error(w, "code_challenge_method must be S256", http.StatusBadRequest)
		return
	}
	code := randHex(10) // GitHub codes are 20 hex characters
	f.codes[code] = &ghCode{user: f.signedIn, redirect: q.Get("redirect_uri"), challenge: q.Get("code_challenge"), scope: q.Get("scope"), expires: time.Now().Add(10 * time.Minute)}
	u, _ := url.Parse(redirect)
	v := u.Query()
	v.Set("code", code)
	if state != "" {
		v.Set("state", state)
	}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (f *ghFake) redirectError(w http.ResponseWriter, r *http.Request, to, state, code, desc, uri string) {
	u, _ := url.Parse(to)
	v := u.Query()
	v.Set("error", code)
	v.Set("error_description", desc)
	v.Set("error_uri", uri)
	if state != "" {
		v.Set("state", state)
	}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// withinCallback is GitHub's rule: same scheme, host and port, and a path
// at or below the callback's.
func withinCallback(redirect, callback string) bool {
	r, err1 := url.Parse(redirect)
	c, err2 := url.Parse(callback)
	if err1 != nil || err2 != nil {
		return false
	}
	return r.Scheme == c.Scheme && r.Host == c.Host && (r.Path == c.Path || strings.HasPrefix(r.Path, strings.TrimSuffix(c.Path, "/")+"/"))
}

// accessToken is POST /login/oauth/access_token, for codes and (GitHub
// App user tokens) refresh tokens. Like GitHub, it answers 200 even for
// errors, as JSON with Accept: application/json, else form-encoded.
func (f *ghFake) accessToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	p := r.Form
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := func(code, desc, anchor string) {
		f.answer(w, r, map[string]any{"error": code, "error_description": desc,
			"error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#" + anchor})
	}
	if p.Get("client_id") != f.clientID || subtle.ConstantTimeCompare([]byte(p.Get("client_secret")), []byte(f.clientSecret)) != 1 {
		fail("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.", "incorrect-client-credentials")
		return
	}
	var user int64
	var scope string
	switch p.Get("grant_type") {
	case "refresh_token":
		old := f.refresh[p.Get("refresh_token")]
		if old == nil {
			fail("bad_refresh_token", "The refresh token passed is incorrect or expired.", "bad-refresh-token")
			return
		}
		delete(f.refresh, p.Get("refresh_token")) // single use
		f.refreshes++
		user, scope = old.user, old.scope
	case "", "authorization_code":
		c := f.codes[p.Get("code")]
		if c == nil || c.used || time.Now().After(c.expires) {
			fail("bad_verification_code", "The code passed is incorrect or expired.", "bad-verification-code")
			return
		}
		c.used = true
		if ru := p.Get("redirect_uri"); c.redirect != "" && ru != c.redirect {
			fail("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.", "redirect-uri-mismatch")
			return
		}
		if c.challenge != "" {
			sum := sha256.Sum256([]byte(p.Get("code_verifier")))
			if p.Get("code_verifier") == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
				fail("bad_verification_code", "The code_verifier does not match the code_challenge.", "bad-verification-code")
				return
			}
		}
		user, scope = c.user, normalizeScope(c.scope)
	default:
		fail("unsupported_grant_type", "The grant type is not supported.", "unsupported-grant-type")
		return
	}
	grant := &ghToken{user: user, scope: scope}
	resp := map[string]any{"token_type": "bearer", "scope": scope}
	var access string
	if f.expiring > 0 {
		access = "ghu_" + randHex(18)
		grant.expires = time.Now().Add(f.expiring)
		grant.refresh = "ghr_" + randHex(38)
		f.refresh[grant.refresh] = grant
		resp["expires_in"] = int(f.expiring / time.Second)
		resp["refresh_token"] = grant.refresh
		resp["refresh_token_expires_in"] = 15897600
	} else {
		access = "gho_" + randHex(18)
	}
	resp["access_token"] = access
	f.tokens[access] = grant
	f.issued = append(f.issued, access)
	f.answer(w, r, resp)
}

// normalizeScope turns "read:org user:email" into GitHub's "read:org,user:email".
func normalizeScope(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, ",", " ")), ",")
}

func (f *ghFake) answer(w http.ResponseWriter, r *http.Request, v map[string]any) {
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(v)
		return
	}
	vals := url.Values{}
	for k, x := range v {
		vals.Set(k, fmt.Sprint(x))
	}
	w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	_, _ = w.Write([]byte(vals.Encode()))
}

// api wraps a REST handler: it authenticates the token (Authorization:
// Bearer or token), sets GitHub's headers, and answers 401 Bad
// credentials for a missing, unknown, revoked or expired token.
func (f *ghFake) api(h func(w http.ResponseWriter, r *http.Request, me *ghAccount, grant *ghToken)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			tok, _ = strings.CutPrefix(auth, "token ")
		}
		w.Header().Set("X-GitHub-Media-Type", "github.v3; format=json")
		w.Header().Set("X-RateLimit-Limit", "5000")
		w.Header().Set("X-RateLimit-Remaining", "4999")
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
		w.Header().Set("X-RateLimit-Resource", "core")
		f.mu.Lock()
		grant := f.tokens[tok]
		var me *ghAccount
		if grant != nil && !grant.revoked && (grant.expires.IsZero() || time.Now().Before(grant.expires)) {
			me = f.users[grant.user]
		}
		if me != nil {
			a := *me
			me = &a
		}
		f.mu.Unlock()
		if me == nil {
			ghJSON(w, http.StatusUnauthorized, map[string]any{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"})
			return
		}
		w.Header().Set("X-OAuth-Scopes", strings.ReplaceAll(grant.scope, ",", ", "))
		h(w, r, me, grant)
	}
}

func ghJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter) {
	ghJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"})
}

func (f *ghFake) apiURL(r *http.Request) string {
	if strings.HasPrefix(r.URL.Path, "/api/v3/") {
		return f.srv.URL + "/api/v3"
	}
	return f.srv.URL
}

func hasScope(grant *ghToken, want ...string) bool {
	for _, s := range strings.Split(grant.scope, ",") {
		if slices.Contains(want, strings.TrimSpace(s)) {
			return true
		}
	}
	return false
}

func (f *ghFake) userJSON(r *http.Request, a *ghAccount) map[string]any {
	api := f.apiURL(r)
	var name any
	if a.name != "" {
		name = a.name
	}
	return map[string]any{
		"login": a.login, "id": a.id, "node_id": base64.StdEncoding.EncodeToString([]byte("04:User" + strconv.FormatInt(a.id, 10))),
		"avatar_url": f.srv.URL + "/avatars/u/" + strconv.FormatInt(a.id, 10) + "?v=4", "gravatar_id": "",
		"url": api + "/users/" + a.login, "html_url": f.srv.URL + "/" + a.login,
		"followers_url": api + "/users/" + a.login + "/followers", "organizations_url": api + "/users/" + a.login + "/orgs",
		"repos_url": api + "/users/" + a.login + "/repos", "type": "User", "user_view_type": "private", "site_admin": false,
		"name": name, "company": nil, "blog": "", "location": nil, "email": nil, "hireable": nil, "bio": nil,
		"twitter_username": nil, "public_repos": 3, "public_gists": 0, "followers": 1, "following": 0,
		"created_at": "2020-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
	}
}

// user is GET /user.
func (f *ghFake) user(w http.ResponseWriter, r *http.Request, me *ghAccount, _ *ghToken) {
	ghJSON(w, http.StatusOK, f.userJSON(r, me))
}

// emails is GET /user/emails (needs the user:email or user scope).
func (f *ghFake) emails(w http.ResponseWriter, r *http.Request, me *ghAccount, grant *ghToken) {
	if !hasScope(grant, "user:email", "user") && !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ghu_") {
		notFound(w)
		return
	}
	out := me.emails
	if out == nil {
		out = []ghEmail{}
	}
	ghJSON(w, http.StatusOK, out)
}

func (f *ghFake) orgJSON(r *http.Request, org string) map[string]any {
	api := f.apiURL(r)
	return map[string]any{
		"login": org, "id": 9000 + len(org), "node_id": "O_" + org, "url": api + "/orgs/" + org,
		"repos_url": api + "/orgs/" + org + "/repos", "events_url": api + "/orgs/" + org + "/events",
		"hooks_url": api + "/orgs/" + org + "/hooks", "issues_url": api + "/orgs/" + org + "/issues",
		"members_url": api + "/orgs/" + org + "/members{/member}", "public_members_url": api + "/orgs/" + org + "/public_members{/member}",
		"avatar_url": f.srv.URL + "/avatars/o/" + org, "description": "",
	}
}

// userTeams is GET /user/teams (needs read:org, user or repo), paginated.
func (f *ghFake) userTeams(w http.ResponseWriter, r *http.Request, me *ghAccount, grant *ghToken) {
	if !hasScope(grant, "read:org", "user", "repo", "admin:org", "write:org") && !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ghu_") {
		ghJSON(w, http.StatusForbidden, map[string]any{"message": "You need at least read:org scope or user scope to list your teams.", "documentation_url": "https://docs.github.com/rest/teams/teams#list-teams-for-the-authenticated-user", "status": "403"})
		return
	}
	api := f.apiURL(r)
	var items []any
	for i, t := range me.teams {
		org, slug, _ := strings.Cut(t, "/")
		items = append(items, map[string]any{
			"id": 100 + i, "node_id": "T_" + slug, "url": api + "/teams/" + strconv.Itoa(100+i),
			"html_url": f.srv.URL + "/orgs/" + org + "/teams/" + slug, "name": strings.ToUpper(slug[:1]) + slug[1:],
			"slug": slug, "description": "", "privacy": "closed", "notification_setting": "notifications_enabled",
			"permission": "pull", "members_url": api + "/teams/" + strconv.Itoa(100+i) + "/members{/member}",
			"repositories_url": api + "/teams/" + strconv.Itoa(100+i) + "/repos", "parent": nil,
			"members_count": 3, "repos_count": 1, "created_at": "2020-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
			"organization": f.orgJSON(r, org),
		})
	}
	f.page(w, r, items)
}

// userOrgs is GET /user/orgs, paginated.
func (f *ghFake) userOrgs(w http.ResponseWriter, r *http.Request, me *ghAccount, _ *ghToken) {
	var items []any
	for _, o := range me.orgs {
		items = append(items, f.orgJSON(r, o))
	}
	f.page(w, r, items)
}

// page answers one page of items, with GitHub's Link header.
func (f *ghFake) page(w http.ResponseWriter, r *http.Request, items []any) {
	per, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if per <= 0 {
		per = 30
	}
	f.mu.Lock()
	per = min(per, f.perPage, 100)
	f.mu.Unlock()
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 1)
	last := max((len(items)+per-1)/per, 1)
	from, to := min((page-1)*per, len(items)), min(page*per, len(items))
	link := func(p int, rel string) string {
		u := *r.URL
		q := u.Query()
		q.Set("per_page", strconv.Itoa(per))
		q.Set("page", strconv.Itoa(p))
		u.RawQuery = q.Encode()
		return "<" + f.srv.URL + u.Path + "?" + u.RawQuery + `>; rel="` + rel + `"`
	}
	var links []string
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"), link(page-1, "prev"))
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	out := items[from:to]
	if out == nil {
		out = []any{}
	}
	ghJSON(w, http.StatusOK, out)
}

// orgMember is GET /orgs/{org}/members/{username}: 204 if a member, 404
// if not; 302 to the public members check if the requester is not an
// org member; 404 for an unknown org.
func (f *ghFake) orgMember(w http.ResponseWriter, r *http.Request, me *ghAccount, _ *ghToken) {
	org := strings.ToLower(r.PathValue("org"))
	user := strings.ToLower(r.PathValue("username"))
	f.mu.Lock()
	known := false
	var member bool
	for _, a := range f.users {
		if slices.Contains(a.orgs, org) {
			known = true
			if strings.ToLower(a.login) == user {
				member = true
			}
		}
	}
	f.mu.Unlock()
	switch {
	case !known:
		notFound(w)
	case !slices.Contains(me.orgs, org):
		w.Header().Set("Location", f.apiURL(r)+"/orgs/"+org+"/public_members/"+user)
		w.WriteHeader(http.StatusFound)
	case member:
		w.WriteHeader(http.StatusNoContent)
	default:
		notFound(w)
	}
}
