package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const servicePolicy = `admins: [admin]
accounts:
  alice: %q
  admin: %q
images:
  notebook: {image: "hubgate/testapp:latest", port: 8888}
teams:
  research:
    members: [alice, admin]
    images: [notebook]
  others:
    members: [bob]
    images: [notebook]
services:
  dash:
    url: %q
    teams: [research]
    description: "Team dashboard"
  keep:
    url: %q
    teams: [research]
    strip_prefix: false
`

type echoed struct {
	Method, Path string
	Header       http.Header
}

// echoService answers with the request it received, and redirects
// /login to a root-relative path as apps unaware of their prefix do.
func echoService(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/login" {
			http.Redirect(w, r, "/welcome", http.StatusFound)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "__Host-hubgate-session", Value: "x", Path: "/"})
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echoed{Method: r.Method, Path: r.URL.Path, Header: r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestTeamServiceServesItsTeamsOnly: the team reaches the service (path
// stripped, or kept), with the gateway's identity header and none a
// client sent, without hubgate's cookies; everyone else is refused, and
// so are other sites.
func TestTeamServiceServesItsTeamsOnly(t *testing.T) {
	f := newFixture(t, time.Second)
	svc := echoService(t)
	f.writePolicy(t, servicePolicy, passwordHash(), passwordHash(), svc.URL, svc.URL)
	if res := f.watcher.Reload(); !res.OK {
		t.Fatal(res.Err)
	}
	alice, _ := f.cookie(t, "alice")
	w := f.do(t, request("GET", "/services/dash/api/x?q=1", alice+"; app=keep",
		"X-Hubgate-User", "admin", "X-Forwarded-User", "admin", "Remote-User", "admin", "Authorization", "Basic YWRtaW46eA==", "X-Forwarded-Prefix", "/evil"))
	if w.Code != http.StatusOK {
		t.Fatalf("alice: %d %s", w.Code, w.Body)
	}
	var got echoed
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Path != "/api/x" || got.Header.Get("X-Hubgate-User") != "alice" || got.Header.Get("X-Forwarded-Prefix") != "/services/dash" {
		t.Fatalf("service saw %+v", got)
	}
	for _, h := range []string{"X-Forwarded-User", "Remote-User", "Authorization"} {
		if got.Header.Get(h) != "" {
			t.Errorf("client's %s reached the service: %q", h, got.Header.Get(h))
		}
	}
	if c := got.Header.Get("Cookie"); strings.Contains(c, "hubgate") || !strings.Contains(c, "app=keep") {
		t.Errorf("cookies the service saw: %q", c)
	}
	if sc := w.Header().Values("Set-Cookie"); len(sc) != 0 {
		t.Errorf("the service set a hubgate cookie: %q", sc)
	}
	// A root-relative redirect comes back under the prefix.
	if w := f.do(t, request("GET", "/services/dash/login", alice)); w.Code != http.StatusFound || w.Header().Get("Location") != "/services/dash/welcome" {
		t.Fatalf("redirect: %d %q", w.Code, w.Header().Get("Location"))
	}
	// strip_prefix: false sends the path as it came.
	w = f.do(t, request("GET", "/services/keep/a/b", alice))
	_ = json.Unmarshal(w.Body.Bytes(), &got)
	if w.Code != http.StatusOK || got.Path != "/services/keep/a/b" {
		t.Fatalf("keep: %d %+v", w.Code, got)
	}
	// The canonical address.
	if w := f.do(t, request("GET", "/services/dash", alice)); w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "/services/dash/" {
		t.Fatalf("no slash: %d %q", w.Code, w.Header().Get("Location"))
	}
	if w := f.do(t, request("GET", "/services/keep/../dash/x", alice)); w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "/services/dash/x" {
		t.Fatalf("dot-dot: %d %q", w.Code, w.Header().Get("Location"))
	}
	// Not the team: refused; no service: 404; no login: 401.
	bob, _ := f.cookie(t, "bob")
	if w := f.do(t, request("GET", "/services/dash/", bob)); w.Code != http.StatusForbidden {
		t.Fatalf("bob: %d", w.Code)
	}
	if w := f.do(t, request("GET", "/services/nope/", alice)); w.Code != http.StatusNotFound {
		t.Fatalf("unknown service: %d", w.Code)
	}
	if w := f.do(t, request("GET", "/services/dash/", "")); w.Code != http.StatusUnauthorized {
		t.Fatalf("no login: %d", w.Code)
	}
	// Another site cannot post to it with alice's cookie.
	if w := f.do(t, request("POST", "/services/dash/x", alice, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")); w.Code != http.StatusForbidden {
		t.Fatalf("cross-site post: %d", w.Code)
	}
	// Tokens: one for all of alice's servers reaches it, a one-server token does not.
	all := f.homeToken(t, "alice", "", "1")
	one := f.homeToken(t, "alice", "notebook", "1")
	if w := f.do(t, request("GET", "/services/dash/", "", bearer(all)...)); w.Code != http.StatusOK {
		t.Fatalf("token: %d %s", w.Code, w.Body)
	}
	if w := f.do(t, request("GET", "/services/dash/", "", bearer(one)...)); w.Code != http.StatusForbidden {
		t.Fatalf("one-server token: %d", w.Code)
	}
	// Alice leaves the team: her next request is refused.
	f.writePolicy(t, strings.Replace(servicePolicy, "members: [alice, admin]", "members: [admin]\n  alone:\n    members: [alice]", 1), passwordHash(), passwordHash(), svc.URL, svc.URL)
	if res := f.watcher.Reload(); !res.OK {
		t.Fatal(res.Err)
	}
	if w := f.do(t, request("GET", "/services/dash/", alice)); w.Code != http.StatusForbidden {
		t.Fatalf("after removal: %d", w.Code)
	}
}
