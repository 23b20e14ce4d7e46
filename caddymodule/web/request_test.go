package web

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner/contract"
	"github.com/hubgate/hubgate/spawner/spawnertest"
)

func decodeSeen(t *testing.T, body string) spawnertest.Seen {
	t.Helper()
	var seen spawnertest.Seen
	if err := json.Unmarshal([]byte(body), &seen); err != nil {
		t.Fatalf("app answer %q: %v", body, err)
	}
	return seen
}

// TestOwnServerIsProxiedWithOnlyTheGatewaysIdentity: the first request
// starts the server and reaches it; the app sees the container secret and
// the gateway's user header, never the client's identity headers or the
// hub's cookies.
func TestOwnServerIsProxiedWithOnlyTheGatewaysIdentity(t *testing.T) {
	f := newFixture(t, 5*time.Second)
	cookie, _ := f.cookie(t, "alice")
	w := f.do(t, request("GET", "/user/alice/notebook/x", cookie+"; _xsrf=keep",
		"Authorization", "token stolen", "X-Hubgate-User", "admin", "X-Forwarded-User", "admin", "Remote-User", "admin", "X_Forwarded_Email", "a@b"))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	seen := decodeSeen(t, w.Body.String())
	h := http.Header(seen.Header)
	if seen.Path != "/user/alice/notebook/x" || h.Get("X-Hubgate-User") != "alice" {
		t.Fatalf("app saw %+v", seen)
	}
	for _, name := range []string{"X-Forwarded-User", "Remote-User", "X_forwarded_email", "X-Forwarded-Email"} {
		if h.Get(name) != "" {
			t.Errorf("client's %s reached the app", name)
		}
	}
	if c := h.Get("Cookie"); strings.Contains(c, session.CookiePrefix) || !strings.Contains(c, "_xsrf=keep") {
		t.Errorf("cookies the app saw: %q", c)
	}
	if len(f.spawner.Specs) != 1 || f.spawner.Specs[0].Env[contract.BaseURL] != "/user/alice/notebook/" {
		t.Fatalf("specs: %+v", f.spawner.Specs)
	}
	// The steady state makes no engine call.
	before := f.spawner.Calls()
	for range 50 {
		if w := f.do(t, request("GET", "/user/alice/notebook/", cookie)); w.Code != http.StatusOK {
			t.Fatalf("steady state: %d", w.Code)
		}
	}
	if n := f.spawner.Calls() - before; n != 0 {
		t.Fatalf("50 steady-state requests made %d engine calls", n)
	}
}

// TestRefusals: every path trick the e2e suite tries, other users'
// servers, images the policy does not allow, cross-site requests, logins
// that ended.
func TestRefusals(t *testing.T) {
	f := newFixture(t, 5*time.Second)
	alice, _ := f.cookie(t, "alice")
	carol, _ := f.cookie(t, "carol") // not in the policy
	revokedCookie, revoked := f.cookie(t, "alice")
	f.login.Revoke(context.Background(), revoked)
	cases := []struct {
		name, method, path, cookie string
		hdr                        []string
		status                     int
		location                   string
	}{
		{"no session, browser", "GET", "/user/alice/notebook/", "", []string{"Sec-Fetch-Mode", "navigate"}, http.StatusFound, "/hub/login?next=%2Fuser%2Falice%2Fnotebook%2F"},
		{"no session, api", "GET", "/user/alice/notebook/", "", nil, http.StatusUnauthorized, ""},
		{"forged cookie", "GET", "/user/alice/notebook/", session.SessionCookie + "=AAAA", nil, http.StatusUnauthorized, ""},
		{"revoked session", "GET", "/user/alice/notebook/", revokedCookie, nil, http.StatusUnauthorized, ""},
		{"not in policy", "GET", "/user/carol/notebook/", carol, nil, http.StatusForbidden, ""},
		{"other user", "GET", "/user/bob/notebook/", alice, nil, http.StatusForbidden, ""},
		{"other user, dot-dot", "GET", "/user/alice/../bob/notebook/", alice, nil, http.StatusForbidden, ""},
		{"other user, encoded dot-dot", "GET", "/user/alice/%2e%2e/bob/notebook/", alice, nil, http.StatusForbidden, ""},
		{"other user, deep dot-dot", "GET", "/user/alice/notebook/../../bob/notebook/", alice, nil, http.StatusForbidden, ""},
		{"other user, double slash", "GET", "/user//bob/notebook/", alice, nil, http.StatusForbidden, ""},
		{"other user, encoded slash", "GET", "/user/alice%2F..%2Fbob/notebook/", alice, nil, http.StatusForbidden, ""},
		{"other user, encoded name", "GET", "/user/%62ob/notebook/", alice, nil, http.StatusForbidden, ""},
		{"image not allowed", "GET", "/user/alice/rstudio/", alice, nil, http.StatusForbidden, ""},
		{"unknown image", "GET", "/user/alice/nope/", alice, nil, http.StatusNotFound, ""},
		{"no server", "GET", "/user/alice/", alice, nil, http.StatusFound, "/"},
		{"own, upper case", "GET", "/user/ALICE/notebook/a?b=1", alice, nil, http.StatusMovedPermanently, "/user/alice/notebook/a?b=1"},
		{"own, dot segment", "GET", "/user/alice/notebook/./a", alice, nil, http.StatusMovedPermanently, "/user/alice/notebook/a"},
		{"own, encoded name", "GET", "/user/%61lice/notebook/", alice, nil, http.StatusMovedPermanently, "/user/alice/notebook/"},
		{"own, non-canonical post", "POST", "/user/ALICE/notebook/api", alice, nil, http.StatusBadRequest, ""},
		{"cross-origin post", "POST", "/user/alice/notebook/api", alice, []string{"Origin", "https://evil.test"}, http.StatusForbidden, ""},
		{"sibling-origin post", "POST", "/user/alice/notebook/api", alice, []string{"Origin", "https://x.hub.test"}, http.StatusForbidden, ""},
		{"cross-site websocket", "GET", "/user/alice/notebook/ws", alice, []string{"Upgrade", "websocket", "Connection", "Upgrade", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden, ""},
		{"admin page, not admin", "GET", "/hub/admin", alice, nil, http.StatusForbidden, ""},
		{"api, not admin", "GET", "/hub/api/servers", alice, nil, http.StatusForbidden, ""},
		{"stop without csrf", "POST", "/hub/stop", alice, []string{"Content-Type", "application/x-www-form-urlencoded"}, http.StatusForbidden, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := f.do(t, request(c.method, c.path, c.cookie, c.hdr...))
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
			if c.location != "" && w.Header().Get("Location") != c.location {
				t.Fatalf("Location %q, want %q", w.Header().Get("Location"), c.location)
			}
		})
	}
	if len(f.spawner.Specs) != 0 {
		t.Fatalf("a refused request started a server: %+v", f.spawner.Specs)
	}
}

// TestStartingServerProgressAnd503: while a server starts, a browser gets
// the progress page (202, refreshing) and an XHR client 503 + Retry-After
// with JSON, both with the place in the queue.
func TestStartingServerProgressAnd503(t *testing.T) {
	f := newFixture(t, 50*time.Millisecond)
	f.spawner.StartDelay = 2 * time.Second
	alice, _ := f.cookie(t, "alice")
	w := f.do(t, request("GET", "/user/alice/notebook/", alice, "Sec-Fetch-Mode", "navigate", "Accept", "text/html"))
	if w.Code != http.StatusAccepted || w.Header().Get("Refresh") == "" || !strings.Contains(w.Body.String(), "Starting notebook") {
		t.Fatalf("browser: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if !strings.Contains(w.Body.String(), `id="nav-logout"`) {
		t.Error("the progress page has no header")
	}
	for _, step := range []string{"creating the container", "starting the container", "waiting for the app to answer"} {
		if !strings.Contains(w.Body.String(), step) {
			t.Errorf("the progress page does not show the step %q", step)
		}
	}
	w = f.do(t, request("GET", "/user/alice/notebook/api/kernels", alice, "X-Requested-With", "XMLHttpRequest"))
	var body map[string]any
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || json.Unmarshal(w.Body.Bytes(), &body) != nil || body["status"] != "starting" {
		t.Fatalf("xhr: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if steps, _ := body["steps"].([]any); len(steps) == 0 || steps[len(steps)-1] != "waiting for the app to answer" {
		t.Errorf("JSON steps: %v", body["steps"])
	}
	if _, ok := body["queue_position"]; !ok {
		t.Fatalf("no queue position: %s", w.Body)
	}
	if len(f.spawner.Specs) != 1 {
		t.Fatalf("two requests during a start made %d containers", len(f.spawner.Specs))
	}
}

// TestQueuePosition: with one start at a time, the second user's start
// waits and says it is first in line.
func TestQueuePosition(t *testing.T) {
	f := newFixture(t, 50*time.Millisecond)
	f.writePolicy(t, strings.Replace(testPolicy, "members: [alice, bob, admin]", "members: [alice, bob, dave, admin]", 1), passwordHash(), passwordHash())
	f.watcher.Reload()
	f.hub.Configure(configWithStarts(1))
	f.spawner.StartDelay = 2 * time.Second
	alice, _ := f.cookie(t, "alice")
	bob, _ := f.cookie(t, "bob")
	f.do(t, request("GET", "/user/alice/notebook/", alice))
	w := f.do(t, request("GET", "/user/bob/notebook/", bob))
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["queue_position"] != float64(1) {
		t.Fatalf("bob's start: %d %s", w.Code, w.Body)
	}
}

// TestAuthorizeIsPure: the decision depends on policy, session and
// request alone; table-tested without any runtime.
func TestAuthorizeIsPure(t *testing.T) {
	pol, err := policies.Parse("p.yaml", []byte("images:\n  notebook: {image: x, port: 1}\nteams:\n  t:\n    members: [alice]\n    images: [notebook]\n"))
	if err != nil {
		t.Fatal(err)
	}
	alice := &session.Session{User: "alice"}
	for _, c := range []struct {
		path, reason string
		allow        bool
	}{
		{"/user/alice/notebook/", "", true},
		{"/user/bob/notebook/", "other_user", false},
		{"/user/alice/rstudio/", "unknown_server", false},
		{"/user/", "bad_path", false},
	} {
		d := Authorize(pol, alice, request("GET", c.path, ""), func() string { return "https://hub.test" })
		if d.Allow != c.allow || d.Reason != c.reason {
			t.Errorf("%s: %+v", c.path, d)
		}
	}
}

// TestFailedStartSaysWhereAndShowsSafeOutput: a start that times out tells
// the user the step it failed in and the app's last lines, without the
// container's secret.
func TestFailedStartSaysWhereAndShowsSafeOutput(t *testing.T) {
	f := newFixture(t, 5*time.Second)
	f.hub.Configure(hub.Config{StartTimeout: time.Second})
	f.spawner.StartDelay = time.Hour
	alice, _ := f.cookie(t, "alice")
	w := f.do(t, request("GET", "/user/alice/notebook/", alice, "Sec-Fetch-Mode", "navigate", "Accept", "text/html"))
	body := w.Body.String()
	if w.Code != http.StatusGatewayTimeout || !strings.Contains(body, "It failed while waiting for the app to answer") || !strings.Contains(body, "listening soon") {
		t.Fatalf("failed start: %d %s", w.Code, body)
	}
	token := f.spawner.Specs[0].Env[contract.Token]
	if strings.Contains(body, token) || !strings.Contains(body, "[redacted]") {
		t.Fatalf("the error page shows the container's secret")
	}
	if !strings.Contains(body, `id="nav-logout"`) {
		t.Error("the error page has no header")
	}
}
