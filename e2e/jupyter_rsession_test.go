package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// RStudio (behind jupyter-rsession-proxy) cannot be installed here; the
// stand-in image records what it receives, so these tests check what the
// gateway must do for it: websockets on any path, Host kept, one value per
// X-Forwarded-* header, and long polls streamed without buffering.

const rsessionPolicy = `admins: [admin]
images:
  rstudio:
    image: "hubgate/rsession-standin:latest"
    port: 8888
    home: /home/jovyan
    description: "RStudio stand-in"
teams:
  research:
    members: [alice, admin]
    images: [rstudio]
`

// standinSeen is the stand-in's report of one request.
type standinSeen struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Host    string              `json:"host"`
	Headers map[string][]string `json:"headers"`
}

// checkRSessionForwarded asserts the Host and that each X-Forwarded-* header came
// as exactly one value (one header line, no comma-joined list), with the
// gateway's own values.
func checkRSessionForwarded(t *testing.T, g *gateway, what string, s standinSeen) {
	t.Helper()
	want := "localhost:" + strconv.Itoa(g.httpsPort)
	if s.Host != want {
		t.Errorf("%s: the app saw Host %q, want the client's %q", what, s.Host, want)
	}
	found := map[string]string{}
	for k, vs := range s.Headers {
		if !strings.HasPrefix(strings.ToLower(k), "x-forwarded-") {
			continue
		}
		if len(vs) != 1 || strings.Contains(vs[0], ",") {
			t.Errorf("%s: %s has %d values %q, want exactly one", what, k, len(vs), vs)
			continue
		}
		found[http.CanonicalHeaderKey(k)] = vs[0]
	}
	if found["X-Forwarded-Proto"] != "https" {
		t.Errorf("%s: X-Forwarded-Proto %q, want https", what, found["X-Forwarded-Proto"])
	}
	if found["X-Forwarded-Host"] != want {
		t.Errorf("%s: X-Forwarded-Host %q, want %q", what, found["X-Forwarded-Host"], want)
	}
	if ip := found["X-Forwarded-For"]; ip != "127.0.0.1" && ip != "::1" {
		t.Errorf("%s: X-Forwarded-For %q, want the client's loopback address", what, ip)
	}
}

func TestRStudioProxyRequirements(t *testing.T) {
	buildTestImage(t, "rsession-standin", "hubgate/rsession-standin:latest")
	g := startGateway(t, gwOptions{policy: rsessionPolicy})
	c := g.login("alice")
	base := "/user/alice/rstudio/"

	// Plain requests: Host kept, one value per X-Forwarded-* header, even
	// when the client sends its own (repeated) ones.
	resp, body := g.getReady(c, base+"headers")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stand-in: %d %s", resp.StatusCode, body)
	}
	var s standinSeen
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("stand-in body: %v\n%s", err, body)
	}
	checkRSessionForwarded(t, g, "GET", s)
	resp, body = g.get(c, base+"headers",
		"X-Forwarded-For", "203.0.113.7", "X-Forwarded-For", "198.51.100.1, 10.0.0.1",
		"X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "http", "X-Forwarded-Port", "1")
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &s) != nil {
		t.Fatalf("stand-in with spoofed headers: %d %s", resp.StatusCode, body)
	}
	checkRSessionForwarded(t, g, "GET with the client's own X-Forwarded-*", s)

	// Websockets on arbitrary paths, like RStudio's /p/<port>/websocket/.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	origin := "https://localhost:" + strconv.Itoa(g.httpsPort)
	for _, p := range []string{"p/58fab3e4/websocket/", "p/0a1b2c3d/terminal/websocket/1", "websocket/"} {
		ws, _, err := websocket.Dial(ctx, "wss://localhost:"+strconv.Itoa(g.httpsPort)+base+p, &websocket.DialOptions{
			HTTPClient: c,
			HTTPHeader: http.Header{"Origin": {origin}, "X-Forwarded-For": {"203.0.113.7"}},
		})
		if err != nil {
			t.Fatalf("websocket on %s: %v", p, err)
		}
		_, hello, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("websocket on %s: read: %v", p, err)
		}
		var up standinSeen
		if err := json.Unmarshal(hello, &up); err != nil {
			t.Fatalf("websocket on %s: %v\n%s", p, err, hello)
		}
		if up.Path != base+p {
			t.Errorf("websocket reached the app at %q, want %q", up.Path, base+p)
		}
		checkRSessionForwarded(t, g, "websocket "+p, up)
		if err := ws.Write(ctx, websocket.MessageText, []byte("ping "+p)); err != nil {
			t.Fatal(err)
		}
		if _, echo, err := ws.Read(ctx); err != nil || string(echo) != "ping "+p {
			t.Fatalf("websocket on %s: echo %q %v", p, echo, err)
		}
		ws.Close(websocket.StatusNormalClosure, "")
	}

	// A long poll: the first chunk arrives at once, not when the response ends.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.url(base+"events/get_events?ms=2000"),
		strings.NewReader(`{"method":"get_events","params":[0]}`))
	req.Header.Set("Content-Type", "application/json")
	began := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("long poll: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("long poll: %d", resp.StatusCode)
	}
	r := bufio.NewReader(resp.Body)
	first, err := r.ReadString('\n')
	t1 := time.Since(began)
	if err != nil || strings.TrimSpace(first) != `{"chunk":1}` {
		t.Fatalf("long poll first chunk %q: %v", first, err)
	}
	second, err := r.ReadString('\n')
	t2 := time.Since(began)
	if err != nil || strings.TrimSpace(second) != `{"chunk":2}` {
		t.Fatalf("long poll second chunk %q: %v", second, err)
	}
	t.Logf("long poll: first chunk after %s, second after %s", t1.Round(time.Millisecond), t2.Round(time.Millisecond))
	if t1 > time.Second || t2-t1 < 1500*time.Millisecond {
		t.Fatalf("the long poll was buffered: first chunk after %s, second after %s", t1, t2)
	}

	// Every request the app recorded (upgrades and long poll included)
	// had the client's Host and single X-Forwarded-* values. (The
	// gateway's own readiness probe, which carries no X-Hubgate-User, is
	// not a proxied request.)
	resp, body = g.get(c, base+"recorded")
	var all []standinSeen
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &all) != nil {
		t.Fatalf("recorded: %d %s", resp.StatusCode, body)
	}
	proxied := 0
	for _, s := range all {
		if len(s.Headers["X-Hubgate-User"]) == 0 {
			continue
		}
		proxied++
		checkRSessionForwarded(t, g, s.Method+" "+s.Path, s)
	}
	if proxied < 6 {
		t.Fatalf("the app recorded %d proxied requests, want at least 6:\n%s", proxied, body)
	}
}
