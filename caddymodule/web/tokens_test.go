package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hubgate/hubgate/caddymodule/tokens"
)

const tokenPolicy = `admins: [admin]
accounts:
  alice: %q
  admin: %q
images:
  notebook: {image: "hubgate/testapp:latest", port: 8888, description: "Test app"}
  rstudio: {image: "hubgate/testapp:latest", port: 8888}
teams:
  research:
    members: [alice, bob, admin]
    images: [notebook, rstudio]
`

var newTokenRE = regexp.MustCompile(`id="new-token" readonly value="(hgp_[^"]+)"`)

// formPost posts a home-page form as a browser would.
func formPost(path, cookie string, form url.Values) *http.Request {
	r := request("POST", path, cookie, "Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "same-origin",
		"Sec-Fetch-Mode", "navigate", "Accept", "text/html", "Origin", "https://hub.test")
	r.Body = ioNopCloser(form.Encode())
	r.ContentLength = int64(len(form.Encode()))
	return r
}

// homeToken makes a token on the home page's form and returns it.
func (f *fixture) homeToken(t *testing.T, user, scope, expires string) string {
	t.Helper()
	cookie, sess := f.cookie(t, user)
	w := f.do(t, formPost("/hub/tokens", cookie, url.Values{"csrf": {f.login.CSRF(sess)}, "note": {"laptop"}, "scope": {scope}, "expires": {expires}}))
	m := newTokenRE.FindStringSubmatch(w.Body.String())
	if w.Code != http.StatusOK || m == nil {
		t.Fatalf("make a token: %d %s", w.Code, w.Body)
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("the token page may be cached: %q", w.Header().Get("Cache-Control"))
	}
	return m[1]
}

func bearer(tok string) []string { return []string{"Authorization", "token " + tok} }

// TestTokenReachesItsOwnersServerOnly: a token made on the home page
// reaches its owner's server without a cookie (the app sees the
// container secret, never the token), never another user's server, never
// a hub page, and stops at revocation, at expiry and when its owner leaves
// the policy.
func TestTokenReachesItsOwnersServerOnly(t *testing.T) {
	f := newFixture(t, 5*time.Second)
	f.writePolicy(t, tokenPolicy, passwordHash(), passwordHash())
	f.watcher.Reload()
	tok := f.homeToken(t, "alice", "", "30")

	w := f.do(t, request("GET", "/user/alice/notebook/api/status", "", bearer(tok)...))
	if w.Code != http.StatusOK {
		t.Fatalf("token to own server: %d %s", w.Code, w.Body)
	}
	seen := decodeSeen(t, w.Body.String())
	h := http.Header(seen.Header)
	if h.Get("X-Hubgate-User") != "alice" || !strings.HasPrefix(h.Get("Authorization"), "token ") || strings.Contains(h.Get("Authorization"), tok) {
		t.Fatalf("app saw Authorization %q user %q", h.Get("Authorization"), h.Get("X-Hubgate-User"))
	}
	// Bearer works too, in any case.
	if w := f.do(t, request("GET", "/user/alice/notebook/", "", "Authorization", "bearer "+tok)); w.Code != http.StatusOK {
		t.Fatalf("Bearer: %d", w.Code)
	}
	// Another user's token never reaches alice's server.
	bobs := f.homeToken(t, "bob", "", "30")
	if w := f.do(t, request("GET", "/user/alice/notebook/", "", bearer(bobs)...)); w.Code != http.StatusForbidden {
		t.Fatalf("bob's token to alice's server: %d %s", w.Code, w.Body)
	}
	// With bob's cookie and alice's token, the token decides: it is a token request.
	bobCookie, _ := f.cookie(t, "bob")
	if w := f.do(t, request("GET", "/user/bob/notebook/", bobCookie, bearer(tok)...)); w.Code != http.StatusForbidden {
		t.Fatalf("alice's token with bob's cookie on bob's server: %d", w.Code)
	}
	// Hub pages never take a token.
	for _, p := range []string{"/", "/hub/admin", "/hub/home"} {
		if w := f.do(t, request("GET", p, "", append(bearer(tok), "Accept", "application/json")...)); w.Code != http.StatusUnauthorized {
			t.Errorf("token on %s: %d", p, w.Code)
		}
	}
	r := request("POST", "/hub/stop", "", bearer(tok)...)
	if w := f.do(t, r); w.Code != http.StatusUnauthorized {
		t.Errorf("token on /hub/stop: %d", w.Code)
	}

	// A one-server token reaches only that server.
	one := f.homeToken(t, "alice", "rstudio", "1")
	if w := f.do(t, request("GET", "/user/alice/notebook/", "", bearer(one)...)); w.Code != http.StatusForbidden {
		t.Fatalf("rstudio token on notebook: %d", w.Code)
	}
	if w := f.do(t, request("GET", "/user/alice/rstudio/", "", bearer(one)...)); w.Code != http.StatusOK {
		t.Fatalf("rstudio token on rstudio: %d %s", w.Code, w.Body)
	}

	// Expired: refused with 401.
	short, _, err := f.tokens.Mint(context.Background(), tokens.Params{User: "alice", Note: "short", TTL: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if w := f.do(t, request("GET", "/user/alice/notebook/", "", bearer(short)...)); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "expired") {
		t.Fatalf("expired token: %d %s", w.Code, w.Body)
	}

	// Revoked on the home page: refused at once.
	cookie, sess := f.cookie(t, "alice")
	list, _ := f.tokens.List(context.Background(), "alice")
	var id string
	for _, rec := range list {
		if rec.Server == "" && strings.Contains(tok, rec.ID) {
			id = rec.ID
		}
	}
	home := f.do(t, request("GET", "/", cookie, "Accept", "text/html", "Sec-Fetch-Mode", "navigate"))
	if !strings.Contains(home.Body.String(), `id="token-`+id+`"`) || strings.Contains(home.Body.String(), tok) {
		t.Fatalf("home page lists the token by id only:\n%s", home.Body)
	}
	if w := f.do(t, formPost("/hub/tokens/revoke", cookie, url.Values{"csrf": {"wrong"}, "id": {id}})); w.Code != http.StatusForbidden {
		t.Fatalf("revoke without the CSRF token: %d", w.Code)
	}
	if w := f.do(t, formPost("/hub/tokens/revoke", cookie, url.Values{"csrf": {f.login.CSRF(sess)}, "id": {id}})); w.Code != http.StatusSeeOther {
		t.Fatalf("revoke: %d %s", w.Code, w.Body)
	}
	if w := f.do(t, request("GET", "/user/alice/notebook/", "", bearer(tok)...)); w.Code != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d", w.Code)
	}

	// The owner leaves the policy: her tokens stop on the next request.
	if w := f.do(t, request("GET", "/user/alice/rstudio/", "", bearer(one)...)); w.Code != http.StatusOK {
		t.Fatalf("before removal: %d", w.Code)
	}
	f.writePolicy(t, strings.Replace(tokenPolicy, "members: [alice, bob, admin]", "members: [bob, admin]", 1), passwordHash(), passwordHash())
	f.watcher.Reload()
	if w := f.do(t, request("GET", "/user/alice/rstudio/", "", bearer(one)...)); w.Code != http.StatusForbidden {
		t.Fatalf("after removal: %d", w.Code)
	}
}

func (f *fixture) api(t *testing.T, method, path, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	r := request(method, path, "", hdr...)
	if body != "" {
		r.Body = ioNopCloser(body)
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Type", "application/json")
	}
	w := f.do(t, r)
	var m map[string]any
	if w.Body.Len() > 0 {
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("%s %s: %d not JSON: %s", method, path, w.Code, w.Body)
		}
	}
	return w.Code, m
}

// TestUserAPIOnJupyterHubPaths drives the user's part of the API as a
// JupyterHub client would.
func TestUserAPIOnJupyterHubPaths(t *testing.T) {
	f := newFixture(t, 5*time.Second)
	tok := f.homeToken(t, "alice", "", "30")

	code, me := f.api(t, "GET", "/hub/api/user", "", bearer(tok)...)
	if code != http.StatusOK || me["name"] != "alice" || me["kind"] != "user" || me["admin"] != false {
		t.Fatalf("GET /hub/api/user: %d %v", code, me)
	}
	code, m := f.api(t, "POST", "/hub/api/users/alice/servers/notebook", "", bearer(tok)...)
	if code != http.StatusCreated || m["ready"] != true || m["url"] != "/user/alice/notebook/" {
		t.Fatalf("start: %d %v", code, m)
	}
	if code, m = f.api(t, "POST", "/hub/api/users/alice/servers/notebook", "", bearer(tok)...); code != http.StatusBadRequest || !strings.Contains(m["message"].(string), "already running") {
		t.Fatalf("start again: %d %v", code, m)
	}
	_, me = f.api(t, "GET", "/hub/api/users/alice", "", bearer(tok)...)
	if servers, _ := me["servers"].(map[string]any); servers["notebook"] == nil {
		t.Fatalf("user model lists no running server: %v", me)
	}
	if code, _ = f.api(t, "DELETE", "/hub/api/users/alice/servers/notebook", "", bearer(tok)...); code != http.StatusNoContent {
		t.Fatalf("stop: %d", code)
	}

	// Tokens: make, list, get, revoke.
	code, made := f.api(t, "POST", "/hub/api/users/alice/tokens", `{"note": "ci", "expires_in": 3600}`, bearer(tok)...)
	if code != http.StatusCreated || !tokens.IsToken(made["token"].(string)) || made["note"] != "ci" || made["expires_at"] == nil {
		t.Fatalf("make a token: %d %v", code, made)
	}
	id := made["id"].(string)
	_, list := f.api(t, "GET", "/hub/api/users/alice/tokens", "", bearer(tok)...)
	found := false
	for _, x := range list["api_tokens"].([]any) {
		tm := x.(map[string]any)
		found = found || tm["id"] == id
		if tm["token"] != nil {
			t.Fatalf("the list shows a token: %v", tm)
		}
	}
	if !found {
		t.Fatalf("list: %v", list)
	}
	// A token may not outlive the one that makes it.
	child := made["token"].(string)
	if code, m = f.api(t, "POST", "/hub/api/users/alice/tokens", `{"note": "forever"}`, bearer(child)...); code != http.StatusBadRequest {
		t.Fatalf("child without expiry: %d %v", code, m)
	}
	// One-server scope, and scopes hubgate does not have, refused clearly.
	if code, m = f.api(t, "POST", "/hub/api/users/alice/tokens", `{"note": "one", "expires_in": 600, "scopes": ["access:servers!server=alice/notebook"]}`, bearer(tok)...); code != http.StatusCreated {
		t.Fatalf("one-server token: %d %v", code, m)
	}
	one := m["token"].(string)
	if code, _ = f.api(t, "GET", "/hub/api/users/alice/tokens", "", bearer(one)...); code != http.StatusForbidden {
		t.Fatalf("one-server token lists tokens: %d", code)
	}
	if code, m = f.api(t, "POST", "/hub/api/users/alice/tokens", `{"scopes": ["admin:users"]}`, bearer(tok)...); code != http.StatusBadRequest || !strings.Contains(m["message"].(string), "unsupported scopes") {
		t.Fatalf("admin scope: %d %v", code, m)
	}
	// Another user's token, and an admin's session, never make alice a token.
	bobs := f.homeToken(t, "bob", "", "30")
	if code, _ = f.api(t, "GET", "/hub/api/users/alice/tokens", "", bearer(bobs)...); code != http.StatusForbidden {
		t.Fatalf("bob lists alice's tokens: %d", code)
	}
	if code, _ = f.api(t, "POST", "/hub/api/users/alice/servers/notebook", "", bearer(bobs)...); code != http.StatusForbidden {
		t.Fatalf("bob starts alice's server: %d", code)
	}
	adminCookie, adminSess := f.cookie(t, "admin")
	if code, _ = f.api(t, "POST", "/hub/api/users/alice/tokens", `{}`, "Cookie", adminCookie, CSRFHeader, f.login.CSRF(adminSess)); code != http.StatusForbidden {
		t.Fatalf("admin makes alice a token: %d", code)
	}
	// A session needs the CSRF header to change state.
	aliceCookie, aliceSess := f.cookie(t, "alice")
	if code, _ = f.api(t, "POST", "/hub/api/users/alice/tokens", `{}`, "Cookie", aliceCookie); code != http.StatusForbidden {
		t.Fatalf("session without CSRF: %d", code)
	}
	if code, _ = f.api(t, "POST", "/hub/api/users/alice/tokens", `{}`, "Cookie", aliceCookie, CSRFHeader, f.login.CSRF(aliceSess)); code != http.StatusCreated {
		t.Fatalf("session with CSRF: %d", code)
	}
	// A personal token never reaches the admin API.
	if code, _ = f.api(t, "GET", "/hub/api/servers", "", bearer(tok)...); code != http.StatusForbidden {
		t.Fatalf("personal token on the admin API: %d", code)
	}
	if code, _ = f.api(t, "DELETE", "/hub/api/users/alice/tokens/"+id, "", bearer(tok)...); code != http.StatusNoContent {
		t.Fatalf("revoke: %d", code)
	}
	if code, _ = f.api(t, "GET", "/hub/api/user", "", bearer(child)...); code != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d", code)
	}
}
