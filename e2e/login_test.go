package e2e

import (
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
)

func TestBinaryListsModulesAndValidatesCaddyfile(t *testing.T) {
	out, err := exec.Command(caddyBin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("list-modules: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "http.handlers.hubgate") {
		t.Fatalf("list-modules does not show http.handlers.hubgate:\n%s", out)
	}
	cmd := exec.Command(caddyBin, "validate", "--config", "Caddyfile", "--adapter", "caddyfile")
	cmd.Dir = repoRoot
	cmd.Env = append(cmd.Environ(), "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Valid configuration") {
		t.Fatalf("caddy validate on the repository's Caddyfile: %v\n%s", err, out)
	}
}

func TestLocalLoginAndLogout(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.client()

	// Not logged in: browsers are sent to the login page, API clients get 401.
	resp, _ := g.navigate(c, "/user/alice/notebook/")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/hub/login?next=") {
		t.Fatalf("anonymous browser: %d %q, want 302 to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := g.get(c, "/user/alice/notebook/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous API client: %d, want 401", resp.StatusCode)
	}

	// A wrong password is refused and sets no session.
	resp = g.postLogin(c, "alice", "wrong", "/")
	if resp.StatusCode != http.StatusUnauthorized || g.cookie(c, "__Host-hubgate-session") != nil {
		t.Fatalf("wrong password: %d, session cookie %v", resp.StatusCode, g.cookie(c, "__Host-hubgate-session"))
	}
	// An unknown user likewise.
	if resp := g.postLogin(c, "nobody", "x", "/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unknown user: %d, want 401", resp.StatusCode)
	}

	// The right password logs in and returns to the page asked for.
	resp = g.postLogin(c, "Alice", accounts["alice"], "/user/alice/notebook/")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/user/alice/notebook/" {
		t.Fatalf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var setCookie string
	for _, sc := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(sc, "__Host-hubgate-session=") {
			setCookie = sc
		}
	}
	for _, attr := range []string{"Path=/", "Secure", "HttpOnly", "SameSite=Lax"} {
		if !strings.Contains(setCookie, attr) {
			t.Errorf("session cookie %q lacks %s", setCookie, attr)
		}
	}
	if strings.Contains(strings.ToLower(setCookie), "domain=") {
		t.Errorf("session cookie %q has a Domain", setCookie)
	}

	// The home page shows the server the policy allows.
	resp, body := g.get(c, "/", "Accept", "text/html")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "/user/alice/notebook/") || !strings.Contains(body, "alice") {
		t.Fatalf("home page: %d\n%s", resp.StatusCode, body)
	}

	// Logging out needs the CSRF token of the session.
	if resp, _ := g.do(c, http.MethodPost, "/hub/logout", strings.NewReader(""), "Content-Type", "application/x-www-form-urlencoded"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("logout without CSRF token: %d, want 403", resp.StatusCode)
	}
	_, page := g.get(c, "/hub/logout", "Accept", "text/html")
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("logout page has no CSRF token:\n%s", page)
	}
	resp, _ = g.do(c, http.MethodPost, "/hub/logout", strings.NewReader(url.Values{"csrf": {m[1]}}.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d, want 303", resp.StatusCode)
	}
	if resp, _ := g.get(c, "/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after logout: %d, want 401", resp.StatusCode)
	}
	if !g.waitLog(`"msg":"login"`, 0) || !g.waitLog(`"msg":"login failed"`, 0) {
		t.Errorf("audit log lacks login lines")
	}
	if strings.Contains(g.logs(), accounts["alice"]) {
		t.Errorf("a password reached the log")
	}
}

func TestLoginCSRFAndCrossSite(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.client()
	// A POST without the pre-login cookie and token (a forged form) fails.
	form := url.Values{"username": {"alice"}, "password": {accounts["alice"]}, "csrf": {"guess"}}
	resp, err := c.PostForm(g.url("/hub/login"), form)
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != http.StatusBadRequest || g.cookie(c, "__Host-hubgate-session") != nil {
		t.Fatalf("forged login form: %d, want 400 and no session", resp.StatusCode)
	}
	// A complete form (pre-login cookie and its token) posted from another
	// site is refused too.
	_, page := g.get(c, "/hub/login")
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("login page has no csrf field")
	}
	form = url.Values{"username": {"alice"}, "password": {accounts["alice"]}, "csrf": {m[1]}}
	resp, _ = g.do(c, http.MethodPost, "/hub/login", strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusForbidden || g.cookie(c, "__Host-hubgate-session") != nil {
		t.Fatalf("cross-site login post: %d, want 403 and no session", resp.StatusCode)
	}
	// The same form from our own site logs in: the refusals above were
	// about where the form came from, not about the form.
	resp, _ = g.do(c, http.MethodPost, "/hub/login", strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != http.StatusSeeOther || g.cookie(c, "__Host-hubgate-session") == nil {
		t.Fatalf("same-site login post: %d, want 303 and a session", resp.StatusCode)
	}
}

func TestLoginRateLimited(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.client()
	for i := 0; i < 5; i++ {
		if resp := g.postLogin(c, "bob", "wrong", "/"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	// Now even the right password is refused for a while.
	resp := g.postLogin(c, "bob", accounts["bob"], "/")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after 5 failures: %d (Retry-After %q), want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Another user from the same address is not locked out by bob's failures.
	if resp := g.postLogin(g.client(), "alice", accounts["alice"], "/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("alice after bob's failures: %d, want 303", resp.StatusCode)
	}
	if !g.waitLog(`"reason":"rate_limited"`, 0) {
		t.Errorf("rate limiting not audited")
	}
}

func TestForgedAndTamperedCookiesRefused(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.login("alice")
	good := g.cookie(c, "__Host-hubgate-session")
	if good == nil {
		t.Fatal("no session cookie after login")
	}
	if resp, _ := g.get(c, "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("good cookie: %d", resp.StatusCode)
	}
	// A session from another deployment (another key) is worthless here.
	other := startGateway(t, gwOptions{})
	foreign := other.cookie(other.login("alice"), "__Host-hubgate-session").Value

	// A value sealed by this gateway for another purpose (the pre-login
	// cookie) must not pass as a session either.
	fresh := g.client()
	g.get(fresh, "/hub/login")
	loginState := g.cookie(fresh, "__Host-hubgate-login").Value

	flip := []byte(good.Value)
	i := len(flip) / 2
	if flip[i] == 'A' {
		flip[i] = 'B'
	} else {
		flip[i] = 'A'
	}
	forged := map[string]string{
		"tampered":    string(flip),
		"truncated":   good.Value[:len(good.Value)-3],
		"other key":   foreign,
		"plain json":  `{"u":"alice","sid":"x","exp":9999999999}`,
		"base64 json": "eyJ1IjoiYWxpY2UiLCJzaWQiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ",
		"empty":       "",
		"huge":        strings.Repeat("A", 9000),
		"login state": loginState,
	}
	for name, v := range forged {
		req, _ := http.NewRequest(http.MethodGet, g.url("/user/alice/notebook/"), nil)
		req.Header.Set("Cookie", "__Host-hubgate-session="+v)
		resp, err := g.client().Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		readBody(t, resp)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s cookie: %d, want 401", name, resp.StatusCode)
		}
	}
	if n := len(g.containers("alice")); n != 0 {
		t.Errorf("forged cookies started %d containers", n)
	}
}
