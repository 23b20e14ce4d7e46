package e2e

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// githubBlock is what the GitHub tests add to the repository's Caddyfile.
const githubBlock = `
github {
	client_id {$HUBGATE_GITHUB_CLIENT_ID}
	client_secret {env.HUBGATE_GITHUB_CLIENT_SECRET}
	url {$HUBGATE_GITHUB_URL}
	api_url {$HUBGATE_GITHUB_API_URL}
	orgs hubgate-lab
	recheck_interval 1s
	app_tokens {$HUBGATE_GITHUB_APP_TOKENS:false}
}
assertion
`

// githubPolicy grants by GitHub team: data-science gets repos and the
// token, viewers get repos without it.
const githubPolicy = basePolicy + `  data-science:
    groups: ["github:hubgate-lab/data-science"]
    images: [notebook]
    repos: [hubgate-lab/analysis, hubgate-lab/data]
    github_token: true
  viewers:
    groups: ["github:hubgate-lab/viewers"]
    images: [notebook]
    repos: [hubgate-lab/handbook]
`

func gina() *ghAccount {
	return &ghAccount{
		id: 5001, login: "Gina", name: "Gina Grant",
		emails: []ghEmail{{Email: "gina@old.example", Verified: true}, {Email: "gina@example.org", Primary: true, Verified: true}},
		orgs:   []string{"hubgate-lab", "other-org"},
		teams:  []string{"other-org/ds", "hubgate-lab/data-science", "hubgate-lab/everyone"},
	}
}

func startGitHubGateway(t *testing.T, f *ghFake, env map[string]string) *gateway {
	t.Helper()
	all := f.env()
	all["HUBGATE_START_WAIT"] = "1ms"
	for k, v := range env {
		all[k] = v
	}
	g := startAuthGateway(t, gwOptions{policy: githubPolicy, env: all}, githubBlock)
	f.register(g)
	return g
}

// ghAuthorize starts a GitHub login as account id and returns the
// callback URL GitHub redirects to, without requesting it.
func ghAuthorize(t *testing.T, g *gateway, c *http.Client, f *ghFake, id int64, next string) *url.URL {
	t.Helper()
	f.as(id)
	return walk(t, c, g.url("/hub/oauth_start/github?next="+url.QueryEscape(next)), isCallback)
}

func ghLogin(t *testing.T, g *gateway, c *http.Client, f *ghFake, id int64, next string) (*http.Response, string) {
	t.Helper()
	cb := ghAuthorize(t, g, c, f, id, next)
	return getURL(t, c, cb.String(), "Accept", "text/html")
}

func TestGitHubLoginTeamsTokenAndRecheck(t *testing.T) {
	f := newGHFake(t)
	f.perPage = 1 // GitHub paginates; make hubgate follow the Link header
	f.addUser(gina())
	f.addUser(&ghAccount{id: 5002, login: "hank", emails: []ghEmail{{Email: "hank@example.org", Primary: true, Verified: false}},
		orgs: []string{"hubgate-lab"}, teams: []string{"hubgate-lab/viewers"}})
	g := startGitHubGateway(t, f, nil)
	c := g.client()

	resp, page := g.get(c, "/hub/login", "Accept", "text/html")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="provider-github"`) || !strings.Contains(page, "Log in with GitHub") {
		t.Fatalf("login page: %d\n%s", resp.StatusCode, page)
	}
	// The authorization request: our client, callback, state, PKCE.
	resp, _ = g.get(c, "/hub/oauth_start/github")
	auth, _ := url.Parse(resp.Header.Get("Location"))
	if q := auth.Query(); auth.Path != "/login/oauth/authorize" || q.Get("client_id") != f.clientID || q.Get("redirect_uri") != g.url("/hub/oauth_callback") ||
		q.Get("scope") != "read:org user:email" || q.Get("code_challenge_method") != "S256" || q.Get("state") == "" {
		t.Fatalf("authorize request %s", auth)
	}

	// gina logs in; her login is lower-cased.
	if resp, body := ghLogin(t, g, c, f, 5001, "/user/gina/notebook/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/user/gina/notebook/" {
		t.Fatalf("gina's callback: %d %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	env := g.envOf(c, "gina")
	for k, want := range map[string]string{
		"GIT_AUTHOR_NAME": "Gina Grant", "GIT_COMMITTER_NAME": "Gina Grant",
		"GIT_AUTHOR_EMAIL": "gina@example.org", "GIT_COMMITTER_EMAIL": "gina@example.org",
		"HUBGATE_REPOS": "hubgate-lab/analysis hubgate-lab/data", "HUBGATE_GIT_URL": f.srv.URL,
	} {
		if env[k] != want {
			t.Errorf("gina's container %s = %q, want %q", k, env[k], want)
		}
	}
	// Her team grants the token: the container has one GitHub accepts.
	tok := g.containerEnv("gina")["GITHUB_TOKEN"]
	if !f.valid(tok) || f.tokenOwner(tok) != 5001 {
		t.Fatalf("gina's container GITHUB_TOKEN %q is not her valid token", tok)
	}
	if strings.Contains(g.logs(), tok) || strings.Contains(g.logs(), f.clientSecret) {
		t.Fatal("a token or the client secret reached the log")
	}
	// Her groups, in the signed assertion: the allowed org's only.
	w := g.whoami(c, "gina")
	claims := g.verifyAssertion(w.Headers["X-Hubgate-Assertion"][0])
	var groups []string
	for _, x := range claims["groups"].([]any) {
		groups = append(groups, x.(string))
	}
	if !slices.Equal(groups, []string{"github:hubgate-lab", "github:hubgate-lab/data-science", "github:hubgate-lab/everyone"}) {
		t.Errorf("gina's groups %v", groups)
	}

	// hank's team grants repos but not the token; his primary email is
	// not verified, so he gets GitHub's no-reply address.
	ch := g.client()
	if resp, _ := ghLogin(t, g, ch, f, 5002, "/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("hank's callback: %d", resp.StatusCode)
	}
	envh := g.envOf(ch, "hank")
	if envh["HUBGATE_REPOS"] != "hubgate-lab/handbook" || envh["GIT_AUTHOR_NAME"] != "hank" || envh["GIT_AUTHOR_EMAIL"] != "5002+hank@users.noreply.127.0.0.1" {
		t.Errorf("hank's container env %v", envh)
	}
	if tok, ok := g.containerEnv("hank")["GITHUB_TOKEN"]; ok {
		t.Errorf("hank's container got a GITHUB_TOKEN (%d chars) his teams do not grant", len(tok))
	}

	// Removed from the team on GitHub, gina loses access within the
	// re-check interval (1s here), and her websocket is closed.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://localhost:"+strconv.Itoa(g.httpsPort)+"/user/gina/notebook/ws", &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	removed := time.Now()
	f.edit(5001, func(a *ghAccount) {
		a.teams = slices.DeleteFunc(a.teams, func(s string) bool { return s == "hubgate-lab/data-science" })
	})
	eventually(t, 10*time.Second, "gina refused after the re-check", func() bool {
		resp, _ := g.get(c, "/user/gina/notebook/whoami")
		return resp.StatusCode == http.StatusForbidden
	})
	t.Logf("access removed %s after the team change", time.Since(removed).Round(100*time.Millisecond))
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	if _, _, err := ws.Read(rctx); err == nil || rctx.Err() != nil {
		t.Errorf("gina's websocket still open after the removal (%v)", err)
	}
	rcancel()
	if !g.waitLog(`"msg":"re-check removed access"`, 0) || !g.waitLog(`"reason":"membership_removed"`, 0) {
		t.Error("the removal is not audited")
	}
	// Added back, she is let in again at the next re-check.
	f.edit(5001, func(a *ghAccount) { a.teams = append(a.teams, "hubgate-lab/data-science") })
	eventually(t, 10*time.Second, "gina let in again", func() bool {
		resp, _ := g.get(c, "/user/gina/notebook/whoami")
		return resp.StatusCode == http.StatusOK
	})
}

func TestGitHubRenamedAndRecycledLoginsRefused(t *testing.T) {
	f := newGHFake(t)
	f.addUser(gina())
	g := startGitHubGateway(t, f, nil)
	c := g.client()
	if resp, _ := ghLogin(t, g, c, f, 5001, "/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("gina's callback: %d", resp.StatusCode)
	}
	if resp, _ := g.get(c, "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("gina's home: %d", resp.StatusCode)
	}

	// gina renames her account: her session (made for "gina") ends at the
	// next re-check...
	f.edit(5001, func(a *ghAccount) { a.login = "gina-renamed" })
	eventually(t, 10*time.Second, "the renamed account's old session refused", func() bool {
		resp, _ := g.get(c, "/")
		return resp.StatusCode == http.StatusUnauthorized
	})
	if !g.waitLog(`"reason":"github_login_changed"`, 0) {
		t.Error("the login change is not audited")
	}
	// ...and she logs in again under her new name (a new user name).
	c2 := g.client()
	if resp, _ := ghLogin(t, g, c2, f, 5001, "/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("renamed login: %d", resp.StatusCode)
	}
	if resp, page := g.get(c2, "/", "Accept", "text/html"); resp.StatusCode != http.StatusOK || !strings.Contains(page, "gina-renamed") {
		t.Fatalf("renamed home: %d", resp.StatusCode)
	}

	// Someone else takes the free login "gina": refused, with a clear page;
	// gina's volume stays hers.
	f.addUser(&ghAccount{id: 7001, login: "gina", name: "Another Gina", orgs: []string{"hubgate-lab"}, teams: []string{"hubgate-lab/data-science"},
		emails: []ghEmail{{Email: "g2@example.org", Primary: true, Verified: true}}})
	c3 := g.client()
	resp, page := ghLogin(t, g, c3, f, 7001, "/")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "already belongs to another account") || g.cookie(c3, "__Host-hubgate-session") != nil {
		t.Fatalf("recycled login: %d, session %v\n%s", resp.StatusCode, g.cookie(c3, "__Host-hubgate-session"), page)
	}
	if !g.waitLog(`"reason":"identity_mismatch"`, 0) || !g.waitLog(`"bound_subject":"5001"`, 0) {
		t.Error("the refused recycled login is not audited")
	}
	// The admin releases the name by deleting its storage key.
	key := filepath.Join(g.dir, "data", "caddy", "hubgate", g.name, "identities", "gina")
	if err := os.Remove(key); err != nil {
		t.Fatalf("the binding is not where the docs say: %v", err)
	}
	if resp, _ := ghLogin(t, g, g.client(), f, 7001, "/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login after the admin released the name: %d", resp.StatusCode)
	}
}

func TestGitHubAppTokensRefreshAndFreshTokenOnRestart(t *testing.T) {
	f := newGHFake(t)
	f.expiring = 4 * time.Second // GitHub App user tokens: 8h; short here
	f.addUser(gina())
	g := startGitHubGateway(t, f, map[string]string{"HUBGATE_GITHUB_APP_TOKENS": "true"})
	c := g.client()
	resp, _ := g.get(c, "/hub/oauth_start/github")
	if auth, _ := url.Parse(resp.Header.Get("Location")); auth.Query().Has("scope") {
		t.Errorf("a GitHub App was asked for scopes: %s", auth)
	}
	if resp, _ := ghLogin(t, g, c, f, 5001, "/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("gina's callback: %d", resp.StatusCode)
	}
	g.whoami(c, "gina")
	first := g.containerEnv("gina")["GITHUB_TOKEN"]
	if !f.valid(first) {
		t.Fatalf("container token %q not valid", first)
	}
	// The re-check refreshes the expiring token with its refresh token,
	// so gina keeps access after the first token has expired.
	eventually(t, 10*time.Second, "a refresh", func() bool { return f.refreshCount() > 0 })
	eventually(t, 10*time.Second, "the first token expired", func() bool { return !f.valid(first) })
	if resp, _ := g.get(c, "/user/gina/notebook/whoami"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the first token expired: %d, want 200", resp.StatusCode)
	}
	// A restarted container gets a fresh, valid token.
	old := g.containers("gina")
	docker("rm", "-f", old[0])
	eventually(t, 60*time.Second, "a new container", func() bool {
		resp, _ := g.get(c, "/user/gina/notebook/whoami")
		ids := g.containers("gina")
		return resp.StatusCode == http.StatusOK && len(ids) == 1 && ids[0] != old[0]
	})
	second := g.containerEnv("gina")["GITHUB_TOKEN"]
	if second == first || !f.valid(second) || f.tokenOwner(second) != 5001 {
		t.Fatalf("restarted container token: fresh %v, valid %v", second != first, f.valid(second))
	}
	for _, tok := range f.issuedTokens() {
		if strings.Contains(g.logs(), tok) {
			t.Fatal("a token reached the log")
		}
	}
}

func TestGitHubDeniedBadCodeAndOrgAllowList(t *testing.T) {
	f := newGHFake(t)
	f.addUser(gina())
	f.addUser(&ghAccount{id: 8001, login: "outsider", orgs: []string{"elsewhere"}, teams: []string{"elsewhere/data-science"}})
	g := startGitHubGateway(t, f, nil)

	// The user says no at GitHub: GitHub's documented error redirect,
	// shown as a clear page of ours.
	f.deny()
	c := g.client()
	cb := walk(t, c, g.url("/hub/oauth_start/github"), isCallback)
	if cb.Query().Get("error") != "access_denied" {
		t.Fatalf("the stand-in did not deny: %s", cb)
	}
	resp, page := getURL(t, c, cb.String(), "Accept", "text/html")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "cancelled or refused") || !strings.Contains(page, `href="/hub/login"`) {
		t.Fatalf("denied login: %d\n%s", resp.StatusCode, page)
	}
	if !g.waitLog(`"idp_error":"access_denied"`, 0) {
		t.Error("the denial is not audited")
	}

	// A code GitHub does not know (bad_verification_code) is refused.
	c2 := g.client()
	cb = ghAuthorize(t, g, c2, f, 5001, "/")
	q := cb.Query()
	q.Set("code", "0123456789abcdef0123")
	cb.RawQuery = q.Encode()
	if resp, _ := getURL(t, c2, cb.String(), "Accept", "text/html"); resp.StatusCode != http.StatusForbidden || g.cookie(c2, "__Host-hubgate-session") != nil {
		t.Fatalf("unknown code: %d", resp.StatusCode)
	}
	if !g.waitLog(`"reason":"token_exchange_failed"`, 0) {
		t.Error("the failed exchange is not audited")
	}

	// Not a member of the allowed org: refused at login.
	resp, page = ghLogin(t, g, g.client(), f, 8001, "/")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "not a member of an organization allowed") {
		t.Fatalf("outsider: %d\n%s", resp.StatusCode, page)
	}
	if !g.waitLog(`"reason":"org_not_allowed"`, 0) {
		t.Error("the org refusal is not audited")
	}
	// Leaving the allowed org ends the session at the next re-check.
	c3 := g.client()
	if resp, _ := ghLogin(t, g, c3, f, 5001, "/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("gina: %d", resp.StatusCode)
	}
	f.edit(5001, func(a *ghAccount) { a.orgs = []string{"other-org"} })
	eventually(t, 10*time.Second, "gina's session ends when she leaves the org", func() bool {
		resp, _ := g.get(c3, "/")
		return resp.StatusCode == http.StatusUnauthorized
	})
}
