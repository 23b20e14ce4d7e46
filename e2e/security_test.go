package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestIdentityHeadersAndCookieStripped(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.login("alice")
	g.whoami(c, "alice")
	w := g.whoami(c, "alice",
		"X-Forwarded-User", "bob",
		"X_Forwarded_User", "bob",
		"x-forwarded-user", "bob",
		"X-Hubgate-User", "bob",
		"x-hubgate-groups", "admins",
		"X_HUBGATE_USER", "bob",
		"Remote-User", "bob",
		"REMOTE_USER", "bob",
		"X-Remote-User", "bob",
		"X-Forwarded-Email", "bob@example.org",
		"X-Auth-Request-User", "bob",
		"Authorization", "token stolen",
		"Cookie", "app_pref=dark",
		"X-Forwarded-For", "6.6.6.6",
	)
	for name, vals := range w.Headers {
		n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		for _, v := range vals {
			if strings.Contains(v, "bob") || strings.Contains(v, "admins") || strings.Contains(v, "stolen") {
				t.Errorf("client-sent identity reached the app: %s: %s", name, v)
			}
		}
		if n == "cookie" {
			for _, v := range vals {
				if strings.Contains(v, "__Host-hubgate") {
					t.Errorf("the session cookie reached the app: %s", v)
				}
			}
		}
	}
	if got := w.Headers["X-Hubgate-User"]; len(got) != 1 || got[0] != "alice" {
		t.Errorf("X-Hubgate-User = %v, want [alice]", got)
	}
	if got := w.Headers["Cookie"]; len(got) != 1 || !strings.Contains(got[0], "app_pref=dark") {
		t.Errorf("the app's own cookies were not kept: %v", got)
	}
	if got := w.Headers["X-Forwarded-For"]; len(got) != 1 || strings.Contains(got[0], "6.6.6.6") {
		t.Errorf("X-Forwarded-For = %v, want one gateway-set value", got)
	}
	// The app answers only requests carrying its secret, so the 200 above
	// proves the gateway's token replaced the client's "token stolen";
	// the app reports it redacted, and there must be exactly one.
	if auth := w.Headers["Authorization"]; len(auth) != 1 || auth[0] != "token [redacted]" {
		t.Errorf("Authorization = %v, want the container secret once", auth)
	}
	if want := "localhost:" + itoaPort(g); w.Host != want {
		t.Errorf("Host seen by the app %q, want %q (kept from the client)", w.Host, want)
	}
	if w.User != "alice" || w.BaseURL != "/user/alice/notebook/" {
		t.Errorf("app env: user %q base %q", w.User, w.BaseURL)
	}
}

func TestOtherUsersServerRefused(t *testing.T) {
	g := startGateway(t, gwOptions{})
	bob := g.login("bob")
	g.whoami(bob, "bob") // bob's server runs
	alice := g.login("alice")
	paths := []string{
		"/user/bob/notebook/",
		"/user/bob/notebook/whoami",
		"/user/bob/",
		"/user/alice/../bob/notebook/whoami",
		"/user/alice/%2e%2e/bob/notebook/whoami",
		"/user/alice/%2E%2E/bob/notebook/whoami",
		"/user/alice/notebook/../../bob/notebook/whoami",
		"/user/alice/notebook/%2e%2e/%2e%2e/bob/notebook/whoami",
		"/user//bob/notebook/whoami",
		"/user/./bob/notebook/whoami",
		"/user/BOB/notebook/whoami",
		"/user/Bob/notebook/whoami",
		"/user/bob%2Fnotebook/whoami",
		"/user/alice%2F..%2Fbob/notebook/whoami",
		"/user/b%6Fb/notebook/whoami",
	}
	for _, p := range paths {
		for _, hdr := range [][]string{nil, {"Accept", "text/html", "Sec-Fetch-Mode", "navigate"}} {
			resp, body := g.get(alice, p, hdr...)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("alice GET %s (%v): %d, want 403\n%.200s", p, hdr, resp.StatusCode, body)
			}
			if strings.Contains(body, `"user":"bob"`) {
				t.Errorf("alice reached bob's app through %s", p)
			}
		}
	}
	// Websocket upgrades are refused the same way.
	resp, _ := g.get(alice, "/user/bob/notebook/ws", "Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("alice websocket to bob: %d, want 403", resp.StatusCode)
	}
	// Non-canonical spellings of her own server are redirected, not proxied.
	resp, _ = g.get(alice, "/user/Alice/notebook/whoami")
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/user/alice/notebook/whoami" {
		t.Errorf("/user/Alice/...: %d %q, want 301 to the canonical path", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = g.get(alice, "/user/alice/notebook")
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/user/alice/notebook/" {
		t.Errorf("/user/alice/notebook: %d %q, want 301 to the trailing slash", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := len(g.containers("alice")); n != 0 {
		t.Errorf("alice's probing started %d containers", n)
	}
	if !g.waitLog(`"reason":"other_user"`, 0) {
		t.Errorf("denials not audited")
	}
}

func itoaPort(g *gateway) string { return strconv.Itoa(g.httpsPort) }

func TestCrossOriginRequestsRefused(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.login("alice")
	g.whoami(c, "alice")
	own := "https://localhost:" + itoaPort(g)
	cases := []struct {
		name   string
		method string
		hdr    []string
		want   int
	}{
		{"same-origin PUT", http.MethodPut, []string{"Origin", own, "Sec-Fetch-Site", "same-origin"}, http.StatusCreated},
		{"API client PUT without Origin", http.MethodPut, nil, http.StatusCreated},
		{"cross-origin PUT", http.MethodPut, []string{"Origin", "https://evil.example"}, http.StatusForbidden},
		{"sibling subdomain PUT", http.MethodPut, []string{"Origin", "https://evil.localhost:" + itoaPort(g), "Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
		{"plain-http origin PUT", http.MethodPut, []string{"Origin", "http://localhost:" + itoaPort(g)}, http.StatusForbidden},
		{"opaque origin PUT", http.MethodPut, []string{"Origin", "null"}, http.StatusForbidden},
		{"cross-site without Origin", http.MethodPut, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"cross-site GET is a link, allowed", http.MethodGet, []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, http.StatusOK},
	}
	for _, tc := range cases {
		path := "/user/alice/notebook/files/x.txt"
		if tc.method == http.MethodGet {
			path = "/user/alice/notebook/whoami"
		}
		resp, body := g.do(c, tc.method, path, strings.NewReader("x"), tc.hdr...)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d %.120s, want %d", tc.name, resp.StatusCode, body, tc.want)
		}
	}
	// A websocket opened from another site is refused before the app.
	resp, _ := g.get(c, "/user/alice/notebook/ws", "Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13",
		"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Origin", "https://evil.example")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin websocket: %d, want 403", resp.StatusCode)
	}
	if !g.waitLog(`"reason":"cross_origin"`, time.Second) {
		t.Errorf("cross-origin refusals not audited")
	}
}
