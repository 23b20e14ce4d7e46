package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/serverhost"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/caddymodule/shares"
	"github.com/hubgate/hubgate/caddymodule/tokens"
)

// hostRequest is request for any absolute URL.
func hostRequest(target, cookie string, hdr ...string) *http.Request {
	u, _ := url.Parse(target)
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.URL, r.Host, r.RequestURI = u, u.Host, u.RequestURI()
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

// setCookie finds a cookie the response sets, as "name=value".
func setCookie(t *testing.T, w *httptest.ResponseRecorder, name string) string {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if c.Name == name && c.MaxAge >= 0 && c.Value != "" {
			if !c.Secure || !c.HttpOnly || c.Domain != "" {
				t.Fatalf("cookie %s is not Secure, HttpOnly and host-only: %+v", name, c)
			}
			return c.Name + "=" + c.Value
		}
	}
	t.Fatalf("no cookie %s set; headers %v", name, w.Header())
	return ""
}

// serveServerHosts makes the fixture's site serve each server on a host
// of its own ({server}--{user}.hub.test) with shares on, and personal
// tokens from tok (nil: none).
func (f *fixture) serveServerHosts(t *testing.T, tok *tokens.Store) {
	t.Helper()
	tmpl, err := serverhost.Parse("{server}--{user}.hub.test")
	if err != nil {
		t.Fatal(err)
	}
	pg, _ := pages.New()
	proxy, err := hub.NewProxy(caddyContext(t), f.hub, hub.ProxyConfig{MaxIdleConnsPerHost: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Cleanup() })
	store := shares.New(&certmagic.FileStorage{Path: t.TempDir()}, "p")
	if _, err := store.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.site = New(Options{
		Login: f.login, Hub: f.hub, Proxy: proxy, Pages: pg, Policy: f.watcher.Current,
		PolicyStatus: f.watcher.LastResult, Logger: zap.NewNop(), Audit: zap.NewNop(), StartWait: 5 * time.Second,
		ServerHost: tmpl, Shares: store, SharesEnabled: true, Tokens: tok,
	})
}

// TestServerHostHandshake: the server host's cookie is minted only
// through the hub, with a code good once, on the host it names, in the
// browser that began the handshake.
func TestServerHostHandshake(t *testing.T) {
	f := newFixture(t, 5*time.Second)
	f.serveServerHosts(t, nil)
	hubCookie, _ := f.cookie(t, "alice")
	nav := []string{"Accept", "text/html", "Sec-Fetch-Mode", "navigate"}
	const app = "https://notebook--alice.hub.test/user/alice/notebook/x"

	// The hub's /user/ path is not proxied: it redirects to the host.
	if w := f.do(t, request("GET", "/user/alice/notebook/x", hubCookie, nav...)); w.Code != http.StatusFound || w.Header().Get("Location") != app {
		t.Fatalf("hub /user/: %d %q", w.Code, w.Header().Get("Location"))
	}
	// The hub's cookie on the server host counts for nothing.
	w := f.do(t, hostRequest(app, hubCookie, nav...))
	// (The fixture has no public_url: the hub's origin is the request's.)
	if w.Code != http.StatusFound || !strings.Contains(w.Header().Get("Location"), "/hub/authorize?host=notebook--alice.hub.test&state=") {
		t.Fatalf("step 1: %d %q", w.Code, w.Header().Get("Location"))
	}
	state := setCookie(t, w, session.ServerStateCookie)
	loc, _ := url.Parse(w.Header().Get("Location"))
	// Step 2 at the hub, with its session.
	w = f.do(t, hostRequest("https://hub.test/hub/authorize?"+loc.RawQuery, hubCookie, nav...))
	if w.Code != http.StatusFound || !strings.HasPrefix(w.Header().Get("Location"), "https://notebook--alice.hub.test/hub/server-callback?code=") {
		t.Fatalf("step 2: %d %q %s", w.Code, w.Header().Get("Location"), w.Body)
	}
	callback := w.Header().Get("Location")
	// The code on another server's host, or with another browser's state, fails.
	if w := f.do(t, hostRequest(strings.Replace(callback, "notebook--alice", "notebook--bob", 1), state, nav...)); w.Code != http.StatusBadRequest {
		t.Fatalf("code on another host: %d", w.Code)
	}
	otherState, _ := f.codec.Seal(session.PurposeServerState, serverState{State: "someone-else", Next: "/"})
	if w := f.do(t, hostRequest(callback, session.ServerStateCookie+"="+otherState, nav...)); w.Code != http.StatusBadRequest {
		t.Fatalf("code with another state: %d", w.Code)
	}
	// Step 3: the server host's own cookie.
	w = f.do(t, hostRequest(callback, state, nav...))
	if w.Code != http.StatusFound || w.Header().Get("Location") != "/user/alice/notebook/x" {
		t.Fatalf("step 3: %d %q %s", w.Code, w.Header().Get("Location"), w.Body)
	}
	srv := setCookie(t, w, session.ServerCookie)
	// The code is good once.
	if w := f.do(t, hostRequest(callback, state, nav...)); w.Code != http.StatusBadRequest {
		t.Fatalf("code reused: %d", w.Code)
	}
	// The cookie reaches the app, and only on its own host.
	w = f.do(t, hostRequest(app, srv))
	if w.Code != http.StatusOK {
		t.Fatalf("with the server host's cookie: %d %s", w.Code, w.Body)
	}
	if seen := decodeSeen(t, w.Body.String()); http.Header(seen.Header).Get("X-Hubgate-User") != "alice" || strings.Contains(http.Header(seen.Header).Get("Cookie"), session.CookiePrefix) {
		t.Fatalf("app saw %+v", seen)
	}
	if w := f.do(t, hostRequest("https://rstudio--alice.hub.test/user/alice/rstudio/", srv)); w.Code == http.StatusOK {
		t.Fatal("a server host's cookie worked on another server's host")
	}
	// bob's session gets no code for alice's host.
	bobCookie, _ := f.cookie(t, "bob")
	if w := f.do(t, hostRequest("https://hub.test/hub/authorize?"+loc.RawQuery, bobCookie, nav...)); w.Code != http.StatusForbidden {
		t.Fatalf("bob's authorize for alice's host: %d", w.Code)
	}
}

// TestServerHostTakesPersonalTokens: with server_host, a personal token
// reaches its owner's own server on that server's host (within its
// scope), never another user's server, shared or not.
func TestServerHostTakesPersonalTokens(t *testing.T) {
	f := newFixture(t, 5*time.Second)
	f.writePolicy(t, tokenPolicy, passwordHash(), passwordHash())
	f.watcher.Reload()
	alices := f.homeToken(t, "alice", "", "30")
	rstudioOnly := f.homeToken(t, "alice", "rstudio", "30")
	bobs := f.homeToken(t, "bob", "", "30")
	f.serveServerHosts(t, f.tokens)
	const app = "https://notebook--alice.hub.test/user/alice/notebook/api/status"
	w := f.do(t, hostRequest(app, "", bearer(alices)...))
	if w.Code != http.StatusOK {
		t.Fatalf("alice's token on her server host: %d %s", w.Code, w.Body)
	}
	if h := http.Header(decodeSeen(t, w.Body.String()).Header); h.Get("X-Hubgate-User") != "alice" || strings.Contains(h.Get("Authorization"), alices) {
		t.Fatalf("app saw user %q Authorization %q", h.Get("X-Hubgate-User"), h.Get("Authorization"))
	}
	if len(w.Result().Cookies()) != 0 {
		t.Errorf("a token request got cookies: %v", w.Result().Cookies())
	}
	for name, c := range map[string]struct {
		tok  string
		want int
	}{
		"bob's token":        {bobs, http.StatusForbidden},
		"a one-server token": {rstudioOnly, http.StatusForbidden},
		"an unknown token":   {"hgp_000000000000_" + strings.Repeat("a", 43), http.StatusUnauthorized},
	} {
		if w := f.do(t, hostRequest(app, "", bearer(c.tok)...)); w.Code != c.want {
			t.Errorf("%s on alice's notebook host: %d, want %d", name, w.Code, c.want)
		}
	}
	if w := f.do(t, hostRequest("https://rstudio--alice.hub.test/user/alice/rstudio/", "", bearer(rstudioOnly)...)); w.Code != http.StatusOK {
		t.Errorf("the rstudio token on the rstudio host: %d %s", w.Code, w.Body)
	}
}
