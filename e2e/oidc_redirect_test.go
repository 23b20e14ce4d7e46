package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// evilNext are return-to targets that must all end on "/" (issue #3,
// point 4).
var evilNext = []string{
	"//evil.example",
	"///evil.example",
	"/\\evil.example",
	"\\/evil.example",
	"%2F%2Fevil.example",
	"/%2F%2Fevil.example",
	"/%2fevil.example",
	"/%5Cevil.example",
	"https://evil.example",
	"HTTPS://evil.example/",
	"https:evil.example",
	"javascript:alert(1)",
	"evil.example",
	"/%09/evil.example",
	"/\t/evil.example",
	"%09//evil.example",
	"/%0d%0aLocation:%20https://evil.example",
	"/%00//evil.example",
	"/%7f//evil.example",
	"/ /evil.example",
	"/%20/evil.example",
	"/%E2%80%A8/evil.example",
}

func TestRedirectAfterLocalLoginStaysOnOrigin(t *testing.T) {
	g := startGateway(t, gwOptions{})
	for _, next := range evilNext {
		c := g.client()
		resp := g.postLogin(c, "alice", accounts["alice"], next)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			t.Errorf("next=%q: %d to %q, want 303 to /", next, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// A path on our origin is kept.
	resp := g.postLogin(g.client(), "alice", accounts["alice"], "/user/alice/notebook/?x=1")
	if resp.Header.Get("Location") != "/user/alice/notebook/?x=1" {
		t.Errorf("own path: %q", resp.Header.Get("Location"))
	}
	// The login page never echoes a foreign target into its form.
	_, page := g.get(g.client(), "/hub/login?next="+url.QueryEscape("//evil.example"), "Accept", "text/html")
	if strings.Contains(page, "evil.example") {
		t.Error("the login page carries the foreign target")
	}
}

func TestRedirectAfterGitHubLoginStaysOnOrigin(t *testing.T) {
	f := newGHFake(t)
	f.addUser(gina())
	g := startGitHubGateway(t, f, nil)
	for _, next := range evilNext {
		resp, _ := ghLogin(t, g, g.client(), f, 5001, next)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			t.Errorf("next=%q: %d to %q, want 303 to /", next, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// The /hub/login?provider= form of the start URL, with a good target.
	c := g.client()
	f.as(5001)
	cb := walk(t, c, g.url("/hub/login?provider=github&next="+url.QueryEscape("/user/gina/notebook/tree?a=b")), isCallback)
	if resp, _ := getURL(t, c, cb.String()); resp.Header.Get("Location") != "/user/gina/notebook/tree?a=b" {
		t.Errorf("own path through GitHub: %q", resp.Header.Get("Location"))
	}
}

func TestLogoutRevokesCopiedCookieAndClosesWebsocket(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.login("alice")
	g.whoami(c, "alice")
	copied := g.cookie(c, "__Host-hubgate-session").Value
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://localhost:"+strconv.Itoa(g.httpsPort)+"/user/alice/notebook/ws", &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if resp := g.logout(c); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/hub/login" {
		t.Fatalf("logout: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	if _, _, err := ws.Read(rctx); err == nil || rctx.Err() != nil {
		t.Errorf("websocket still open after logout (%v)", err)
	}
	for _, path := range []string{"/", "/user/alice/notebook/whoami", "/hub/logout"} {
		resp, _ := g.get(g.withCookie(copied), path)
		if resp.StatusCode != http.StatusUnauthorized && !(path == "/hub/logout" && resp.StatusCode == http.StatusSeeOther) {
			t.Errorf("copied cookie after logout, %s: %d", path, resp.StatusCode)
		}
	}
	// The revocation is in Caddy's storage: a restart keeps refusing it.
	g.restart()
	if resp, _ := g.get(g.withCookie(copied), "/user/alice/notebook/whoami"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("copied cookie after a restart: %d, want 401", resp.StatusCode)
	}
	// A new login works as before.
	if resp, _ := g.get(g.login("alice"), "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("new login after logout: %d", resp.StatusCode)
	}
	if !g.waitLog(`"msg":"session revoked"`, 0) {
		t.Error("the revocation is not audited")
	}
}

func TestLogoutNeedsCSRFAndPost(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.login("alice")
	// A planted link (GET) shows a confirmation, never logs out.
	if resp, page := g.get(c, "/hub/logout", "Accept", "text/html"); resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="logout"`) {
		t.Fatalf("GET logout: %d", resp.StatusCode)
	}
	// Cross-site or token-less POSTs are refused.
	if resp, _ := g.do(c, http.MethodPost, "/hub/logout", strings.NewReader("csrf=x"), "Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site logout: %d, want 403", resp.StatusCode)
	}
	if resp, _ := g.get(c, "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("still logged in after refused logouts: %d", resp.StatusCode)
	}
}
