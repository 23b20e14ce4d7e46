package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// startEchoService runs a small HTTP server on loopback, standing for a
// team's dashboard: it answers with the request it received and echoes
// websocket messages at /ws.
func startEchoService(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, b, err := c.Read(r.Context())
				if err != nil {
					return
				}
				if err := c.Write(r.Context(), typ, append([]byte("echo: "), b...)); err != nil {
					return
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "header": r.Header})
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

// The check: a team service answers the team, refuses everyone
// else, and receives no client-sent identity header; websockets reach it
// too, from the hub's own origin only.
func TestTeamServiceAnswersItsTeamOnly(t *testing.T) {
	upstream := startEchoService(t)
	policy := basePolicy + `  outsiders:
    members: [mallory]
    images: [notebook]
services:
  dashboard:
    url: "` + upstream + `"
    teams: [research]
    description: "The team's dashboard"
`
	g := startGateway(t, gwOptions{policy: policy})
	alice := g.login("alice")

	_, home := g.navigate(alice, "/")
	if !strings.Contains(home, `id="service-dashboard"`) || !strings.Contains(home, "The team&#39;s dashboard") {
		t.Fatalf("the home page does not offer the service:\n%s", home)
	}
	resp, body := g.get(alice, "/services/dashboard/api/panels?x=1",
		"X-Hubgate-User", "admin", "X-Forwarded-User", "admin", "Remote-User", "admin", "X-Auth-Request-Email", "admin@example.org",
		"Authorization", "Basic YWRtaW46YWRtaW4=", "X-Real-IP", "10.0.0.1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("alice: %d %s", resp.StatusCode, body)
	}
	var seen struct {
		Path   string
		Header http.Header
	}
	if err := json.Unmarshal([]byte(body), &seen); err != nil {
		t.Fatalf("service answer %q: %v", body, err)
	}
	if seen.Path != "/api/panels" || seen.Header.Get("X-Hubgate-User") != "alice" {
		t.Fatalf("the service saw %+v", seen)
	}
	for _, h := range []string{"X-Forwarded-User", "Remote-User", "X-Auth-Request-Email", "Authorization", "X-Real-Ip"} {
		if v := seen.Header.Get(h); v != "" {
			t.Errorf("the client's %s reached the service: %q", h, v)
		}
	}
	if c := seen.Header.Get("Cookie"); strings.Contains(c, "hubgate") {
		t.Errorf("hubgate's cookies reached the service: %q", c)
	}

	// Everyone else is refused: a user of another team, and no login.
	mallory := g.login("mallory")
	if resp, body := g.get(mallory, "/services/dashboard/"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("mallory: %d %s", resp.StatusCode, body)
	}
	if resp, _ := g.get(g.client(), "/services/dashboard/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no login: %d", resp.StatusCode)
	}

	// A websocket from the hub's page reaches it; one from another site does not.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws := "wss://localhost:" + strconv.Itoa(g.httpsPort) + "/services/dashboard/ws"
	conn, _, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPClient: alice, HTTPHeader: http.Header{"Origin": {g.url("")}}})
	if err != nil {
		t.Fatalf("websocket to the service: %v", err)
	}
	defer conn.CloseNow()
	if err := conn.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := conn.Read(ctx); err != nil || string(b) != "echo: hello" {
		t.Fatalf("websocket answer %q %v", b, err)
	}
	_, resp, err = websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPClient: alice, HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site websocket: %v", err)
	}

	// Alice leaves the team: her open websocket closes at the reload,
	// and her next request is refused.
	g.writePolicy(strings.Replace(policy, "members: [alice, bob, admin]", "members: [bob, admin]\n  alone:\n    members: [alice]", 1))
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	if _, _, err := conn.Read(rctx); err == nil || rctx.Err() != nil {
		t.Fatalf("alice's websocket after she left the team: %v", err)
	}
	eventually(t, 5*time.Second, "alice is refused", func() bool {
		resp, _ := g.get(alice, "/services/dashboard/")
		return resp.StatusCode == http.StatusForbidden
	})
	if !strings.Contains(g.logs(), `"reason":"service_not_allowed"`) {
		t.Errorf("the refusal is not audited:\n%s", g.logTail())
	}
}
