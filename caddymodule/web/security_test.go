package web

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubgate/hubgate/caddymodule/session"
)

// loginForm gets the login page and returns the form's cookie and token.
func (f *fixture) loginForm(t *testing.T) (cookie, csrf string) {
	t.Helper()
	w := f.do(t, request("GET", "/hub/login", "", "Accept", "text/html"))
	for _, c := range w.Result().Cookies() {
		if c.Name == session.LoginCookie {
			cookie = c.Name + "=" + c.Value
		}
	}
	body := w.Body.String()
	i := strings.Index(body, `name="csrf" value="`)
	if cookie == "" || i < 0 {
		t.Fatalf("login page: %d %s", w.Code, body)
	}
	rest := body[i+len(`name="csrf" value="`):]
	return cookie, rest[:strings.IndexByte(rest, '"')]
}

func (f *fixture) postLogin(t *testing.T, user, password string) *http.Response {
	cookie, csrf := f.loginForm(t)
	form := url.Values{"username": {user}, "password": {password}, "csrf": {csrf}, "next": {"/"}}
	r := request("POST", "/hub/login", cookie, "Content-Type", "application/x-www-form-urlencoded")
	r.Body = ioNopCloser(form.Encode())
	return f.do(t, r).Result()
}

// TestConcurrentBadLoginsAreCountedFirst (M1): 40 concurrent bad logins
// for one user get at most the 5 allowed password checks; the rest are
// refused with 429 before bcrypt.
func TestConcurrentBadLoginsAreCountedFirst(t *testing.T) {
	f := newFixture(t, time.Second)
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code := f.postLogin(t, "alice", "wrong").StatusCode
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[http.StatusUnauthorized] > 5 || codes[http.StatusTooManyRequests] < 35 {
		t.Fatalf("40 concurrent bad logins: %v (want at most 5 checked, the rest 429)", codes)
	}
}

// TestLocalSessionEndsWhenItsHashChanges (M3): a local session is valid
// until an admin changes or removes the account's hash in the policy.
func TestLocalSessionEndsWhenItsHashChanges(t *testing.T) {
	f := newFixture(t, time.Second)
	resp := f.postLogin(t, "alice", "secret")
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == session.SessionCookie {
			cookie = c.Name + "=" + c.Value
		}
	}
	if resp.StatusCode != http.StatusSeeOther || cookie == "" {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	if w := f.do(t, request("GET", "/", cookie)); w.Code != http.StatusOK {
		t.Fatalf("home after login: %d", w.Code)
	}
	f.writePolicy(t, testPolicy, "$2a$04$"+strings.Repeat("x", 53), passwordHash())
	if res := f.watcher.Reload(); !res.OK {
		t.Fatalf("reload: %v", res.Err)
	}
	if w := f.do(t, request("GET", "/", cookie)); w.Code != http.StatusUnauthorized {
		t.Fatalf("home after the hash changed: %d, want 401", w.Code)
	}
}

// TestRevocationsFailClosed (L3): until the revocation records could be
// read, no session is accepted and health says not ready.
func TestRevocationsFailClosed(t *testing.T) {
	f := newFixtureWithStorage(t, time.Second, brokenStorage{})
	cookie, _ := f.cookie(t, "alice")
	if w := f.do(t, request("GET", "/", cookie)); w.Code != http.StatusUnauthorized {
		t.Fatalf("session accepted without revocations: %d", w.Code)
	}
	if w := f.do(t, request("GET", "/hub/health", "")); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("health without revocations: %d", w.Code)
	}
}

// TestAppSeesOnlyWhatTheGatewaySays (L7, I1): a client's Connection
// header cannot remove the gateway's headers, and forwarding headers the
// gateway does not set never reach the app.
func TestAppSeesOnlyWhatTheGatewaySays(t *testing.T) {
	f := newFixture(t, 5*time.Second)
	cookie, _ := f.cookie(t, "alice")
	w := f.do(t, request("GET", "/user/alice/notebook/", cookie,
		"Connection", "Authorization, X-Hubgate-User", "X-Real-IP", "6.6.6.6", "Forwarded", "for=6.6.6.6",
		"X-Original-URL", "/admin", "X-Scheme", "http", "X-Authenticated-User", "admin", "X-Remote-Email", "a@b"))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	h := http.Header(decodeSeen(t, w.Body.String()).Header)
	if h.Get("X-Hubgate-User") != "alice" {
		t.Errorf("Connection removed the gateway's user header: %v", h)
	}
	for _, name := range []string{"X-Real-Ip", "Forwarded", "X-Original-Url", "X-Scheme", "X-Authenticated-User", "X-Remote-Email"} {
		if h.Get(name) != "" {
			t.Errorf("%s reached the app", name)
		}
	}
}

// TestAppCannotTouchHubCookiesOrRedirectAway (M4): an app's Set-Cookie for
// hubgate's names and redirects out of its prefix are dropped; its own
// cookies and redirects within its prefix pass.
func TestAppCannotTouchHubCookiesOrRedirectAway(t *testing.T) {
	f := newFixture(t, 5*time.Second)
	cookie, _ := f.cookie(t, "alice")
	q := url.Values{"set-cookie": {"__Host-hubgate-session=evil; Path=/; Secure", "__HOST-HUBGATE-login=x", "_xsrf=ok"}, "location": {"/hub/admin"}, "refresh": {"0; url=https://evil.test/"}}
	w := f.do(t, request("GET", "/user/alice/notebook/?"+q.Encode(), cookie))
	if got := w.Header().Values("Set-Cookie"); len(got) != 1 || got[0] != "_xsrf=ok" {
		t.Errorf("Set-Cookie reaching the browser: %q", got)
	}
	if w.Header().Get("Location") != "" || w.Header().Get("Refresh") != "" {
		t.Errorf("redirects out of the server reached the browser: %v", w.Header())
	}
	w = f.do(t, request("GET", "/user/alice/notebook/?"+url.Values{"location": {"/user/alice/notebook/tree"}}.Encode(), cookie))
	if w.Code != http.StatusFound || w.Header().Get("Location") != "/user/alice/notebook/tree" {
		t.Errorf("a redirect within the server: %d %v", w.Code, w.Header())
	}
	// A second Location after one within the prefix: browsers may follow
	// either, so neither passes.
	w = f.do(t, request("GET", "/user/alice/notebook/?"+url.Values{"location": {"/user/alice/notebook/tree", "https://evil.test/"}}.Encode(), cookie))
	if got := w.Header().Values("Location"); len(got) != 0 {
		t.Errorf("two Location headers, one out of the server, reached the browser: %q", got)
	}
}

// TestScriptsCannotReadHubPagesOrUseTheAPIWithCookies (M4): a fetch from a
// page (Sec-Fetch-Mode cors) gets no hub page, and the API refuses cookie
// calls that come from a user's server.
func TestScriptsCannotReadHubPagesOrUseTheAPIWithCookies(t *testing.T) {
	f := newFixture(t, 5*time.Second)
	cookie, _ := f.cookie(t, "admin")
	if w := f.do(t, request("GET", "/hub/admin", cookie, "Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "same-origin")); w.Code != http.StatusForbidden || strings.Contains(w.Body.String(), "csrf") {
		t.Fatalf("admin page to a script: %d", w.Code)
	}
	if w := f.do(t, request("GET", "/hub/admin", cookie, "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "none")); w.Code != http.StatusOK {
		t.Fatalf("admin page navigation: %d %s", w.Code, w.Body)
	}
	if w := f.do(t, request("GET", "/hub/api/users", cookie, "Sec-Fetch-Site", "same-origin", "Referer", "https://hub.test/user/alice/notebook/tree")); w.Code != http.StatusForbidden {
		t.Fatalf("API from a user's server: %d", w.Code)
	}
	if w := f.do(t, request("GET", "/hub/api/users", cookie, "Sec-Fetch-Site", "same-origin", "Referer", "https://hub.test/hub/admin")); w.Code != http.StatusOK {
		t.Fatalf("API from the admin page: %d %s", w.Code, w.Body)
	}
	for _, h := range []string{"Cross-Origin-Opener-Policy", "Cross-Origin-Resource-Policy", "X-Frame-Options"} {
		if w := f.do(t, request("GET", "/", cookie)); w.Header().Get(h) == "" {
			t.Errorf("home page without %s", h)
		}
	}
}

// TestRecycledAddressNeverGetsAnotherUsersRequests (L9): when an exit
// event is missed and the engine gives the address to another user's new
// server, the old route is dropped instead of proxying there.
func TestRecycledAddressNeverGetsAnotherUsersRequests(t *testing.T) {
	f := newFixture(t, 5*time.Second)
	alice, _ := f.cookie(t, "alice")
	bob, _ := f.cookie(t, "bob")
	if w := f.do(t, request("GET", "/user/alice/notebook/", alice)); w.Code != http.StatusOK {
		t.Fatalf("alice: %d", w.Code)
	}
	f.spawner.NextAddr = f.spawner.Kill("alice", "notebook")
	if w := f.do(t, request("GET", "/user/bob/notebook/", bob)); w.Code != http.StatusOK {
		t.Fatalf("bob: %d", w.Code)
	}
	f.do(t, request("GET", "/user/alice/notebook/", alice))
	for _, seen := range f.spawner.Received("bob", "notebook") {
		if u := http.Header(seen.Header).Get("X-Hubgate-User"); u == "alice" {
			t.Fatalf("bob's server received a request for %q", u)
		}
	}
}
