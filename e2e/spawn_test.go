package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// whoami is what the test app reports about a request it received.
type whoami struct {
	User     string              `json:"user"`
	BaseURL  string              `json:"base_url"`
	Path     string              `json:"path"`
	Host     string              `json:"host"`
	Headers  map[string][]string `json:"headers"`
	Hostname string              `json:"hostname"`
}

func (g *gateway) whoami(c *http.Client, user string, hdr ...string) whoami {
	g.t.Helper()
	resp, body := g.getReady(c, "/user/"+user+"/notebook/whoami", hdr...)
	if resp.StatusCode != http.StatusOK {
		g.t.Fatalf("whoami: %d\n%s", resp.StatusCode, body)
	}
	var w whoami
	if err := json.Unmarshal([]byte(body), &w); err != nil {
		g.t.Fatalf("whoami body: %v\n%s", err, body)
	}
	return w
}

func TestUserNotInPolicyGetsNoContainer(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.login("mallory") // has an account, is in no team
	resp, body := g.get(c, "/user/mallory/notebook/")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("mallory: %d %s, want 403", resp.StatusCode, body)
	}
	if resp, _ := g.get(c, "/"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("mallory's home: %d, want 403", resp.StatusCode)
	}
	if n := len(g.containers("mallory")); n != 0 {
		t.Fatalf("%d containers created for a user outside the policy", n)
	}
	if !g.waitLog(`"reason":"not_in_policy"`, time.Second) {
		t.Errorf("denial not audited")
	}
}

func TestConcurrentFirstRequestsMakeOneContainer(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.login("alice")
	var wg sync.WaitGroup
	codes := make([]int, 20)
	hosts := make([]string, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := g.getReady(c, "/user/alice/notebook/whoami")
			codes[i] = resp.StatusCode
			var w whoami
			_ = json.Unmarshal([]byte(body), &w)
			hosts[i] = w.Hostname
		}()
	}
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusOK {
			t.Errorf("request %d: %d", i, code)
		}
		if hosts[i] != hosts[0] {
			t.Errorf("request %d served by %q, request 0 by %q", i, hosts[i], hosts[0])
		}
	}
	if ids := g.containers("alice"); len(ids) != 1 {
		t.Fatalf("20 racing first requests made %d containers, want 1", len(ids))
	}
	// The container carries the labels, the network, no published ports,
	// and the secret in its env.
	id := g.containers("alice")[0]
	inspect := docker("inspect", id)
	var info []struct {
		Config struct {
			Labels map[string]string
			Env    []string
		}
		HostConfig struct {
			PortBindings map[string]any
			Mounts       []struct{ Type, Source, Target string }
		}
		NetworkSettings struct {
			Ports    map[string]any
			Networks map[string]any
		}
	}
	if err := json.Unmarshal([]byte(inspect), &info); err != nil || len(info) != 1 {
		t.Fatalf("docker inspect: %v", err)
	}
	ci := info[0]
	for _, l := range []string{"hubgate.user", "hubgate.server", "hubgate.image"} {
		if ci.Config.Labels[l] == "" {
			t.Errorf("container lacks label %s: %v", l, ci.Config.Labels)
		}
	}
	if ci.Config.Labels["hubgate.user"] != "alice" || ci.Config.Labels["hubgate.server"] != "notebook" {
		t.Errorf("labels: %v", ci.Config.Labels)
	}
	if len(ci.HostConfig.PortBindings) != 0 {
		t.Errorf("container publishes ports: %v", ci.HostConfig.PortBindings)
	}
	if _, ok := ci.NetworkSettings.Networks[g.name]; !ok || len(ci.NetworkSettings.Networks) != 1 {
		t.Errorf("container networks %v, want only %s", ci.NetworkSettings.Networks, g.name)
	}
	env := strings.Join(ci.Config.Env, "\n")
	for _, want := range []string{"HUBGATE_TOKEN=", "HUBGATE_BASE_URL=/user/alice/notebook/", "JUPYTERHUB_SERVICE_PREFIX=/user/alice/notebook/", "HUBGATE_USER=alice"} {
		if !strings.Contains(env, want) {
			t.Errorf("container env lacks %s", want)
		}
	}
	vols := docker("volume", "ls", "-q", "--filter", "label=hubgate.deployment="+g.name, "--filter", "label=hubgate.user=alice")
	if len(strings.Fields(vols)) != 1 {
		t.Errorf("volumes for alice: %q, want one", vols)
	}
}

func TestFilesSurviveContainerRemoval(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.login("alice")
	g.whoami(c, "alice")
	resp, body := g.do(c, http.MethodPut, "/user/alice/notebook/files/notes.txt", strings.NewReader("results: 42"))
	if resp.StatusCode/100 != 2 {
		t.Fatalf("write file: %d %s", resp.StatusCode, body)
	}
	ids := g.containers("alice")
	if len(ids) != 1 {
		t.Fatalf("containers: %v", ids)
	}
	docker("rm", "-f", ids[0])
	eventually(t, 10*time.Second, "container removed", func() bool { return len(g.containers("alice")) == 0 })

	// The gateway notices the dead route and starts a new container with
	// the same volume.
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, body = g.get(c, "/user/alice/notebook/files/notes.txt")
		if resp.StatusCode == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if resp.StatusCode != http.StatusOK || body != "results: 42" {
		t.Fatalf("file after respawn: %d %q", resp.StatusCode, body)
	}
	if now := g.containers("alice"); len(now) != 1 || now[0] == ids[0] {
		t.Fatalf("containers after respawn: %v (old %s)", now, ids[0])
	}
}

func TestWebsocketEchoThroughGateway(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.login("alice")
	g.whoami(c, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://localhost:"+strconv.Itoa(g.httpsPort)+"/user/alice/notebook/ws", &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatalf("websocket dial through the gateway: %v", err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	for _, msg := range []string{"hello", "ünïcode", strings.Repeat("x", 70000)} {
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		typ, got, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != websocket.MessageText || string(got) != msg {
			t.Fatalf("echo of %d bytes: got %d bytes", len(msg), len(got))
		}
	}
	if err := ws.Write(ctx, websocket.MessageBinary, []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if typ, got, err := ws.Read(ctx); err != nil || typ != websocket.MessageBinary || len(got) != 3 {
		t.Fatalf("binary echo: %v %v %v", typ, got, err)
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// Without a session the websocket is refused.
	_, resp, err := websocket.Dial(ctx, "wss://localhost:"+strconv.Itoa(g.httpsPort)+"/user/alice/notebook/ws", &websocket.DialOptions{HTTPClient: g.client()})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous websocket: %v %v, want 401", err, resp)
	}
}

func TestRestartKeepsSessionsAndReattaches(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.login("alice")
	before := g.whoami(c, "alice")
	ids := g.containers("alice")
	g.restart()
	// The same cookie still works and reaches the same container at once
	// (no start: the gateway found it from its labels).
	resp, body := g.get(c, "/user/alice/notebook/whoami")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after restart: %d %s", resp.StatusCode, body)
	}
	var after whoami
	_ = json.Unmarshal([]byte(body), &after)
	if after.Hostname != before.Hostname {
		t.Fatalf("served by %q after restart, %q before", after.Hostname, before.Hostname)
	}
	if now := g.containers("alice"); len(now) != 1 || now[0] != ids[0] {
		t.Fatalf("containers after restart %v, before %v", now, ids)
	}
	if !g.waitLog(`"msg":"reattached to running servers","servers":1`, 5*time.Second) {
		t.Errorf("the restarted gateway did not report reattaching one server")
	}
}

func TestReloadKeepsSessions(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.login("alice")
	g.whoami(c, "alice")
	cmd := execCaddy(g, "reload", "--config", "Caddyfile", "--adapter", "caddyfile", "--address", g.adminAddr, "--force")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}
	if resp, body := g.get(c, "/user/alice/notebook/whoami"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after reload: %d %s", resp.StatusCode, body)
	}
	if n := len(g.containers("alice")); n != 1 {
		t.Fatalf("containers after reload: %d", n)
	}
}

func TestPolicyEditTakesEffectLive(t *testing.T) {
	g := startGateway(t, gwOptions{})
	alice := g.login("alice")
	bob := g.login("bob")
	g.whoami(alice, "alice")

	// A malformed edit keeps the previous policy.
	writeAtomic(t, g.dir+"/policy/policy.yaml", basePolicy+"  broken: [\n")
	if !g.waitLog(`"msg":"policy reload","ok":false`, 5*time.Second) {
		t.Fatalf("bad edit not reported in the log")
	}
	if !strings.Contains(g.logs(), "policy.yaml:") {
		t.Errorf("the reload error does not name the file and line:\n%s", g.logTail())
	}
	if resp, _ := g.get(alice, "/user/alice/notebook/whoami"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after a malformed edit alice got %d; the last good policy must stay", resp.StatusCode)
	}

	// Removing alice denies her very next request, without a restart.
	writeAtomic(t, g.dir+"/policy/policy.yaml", strings.Replace(basePolicy, "[alice, bob, admin]", "[bob, admin]", 1))
	eventually(t, 5*time.Second, "alice denied after removal", func() bool {
		resp, _ := g.get(alice, "/user/alice/notebook/whoami")
		return resp.StatusCode == http.StatusForbidden
	})
	if resp, _ := g.getReady(bob, "/user/bob/notebook/whoami"); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob after alice's removal: %d", resp.StatusCode)
	}
}

func TestStartProgressAndFailures(t *testing.T) {
	policy := basePolicy + `  broken:
    members: [bob]
    images: [missing, crash]
`
	policy = strings.Replace(policy, "teams:\n", `  missing:
    image: "hubgate/does-not-exist:1"
  crash:
    image: "hubgate/testapp:latest"
    command: ["/testapp", "-crash"]
teams:
`, 1)
	g := startGateway(t, gwOptions{policy: policy, env: map[string]string{"HUBGATE_START_WAIT": "1ms"}})
	alice := g.login("alice")
	// A browser gets a progress page that refreshes into the app...
	resp, body := g.navigate(alice, "/user/alice/notebook/")
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Refresh") == "" || !strings.Contains(body, "Starting notebook") {
		t.Fatalf("browser during start: %d refresh=%q\n%s", resp.StatusCode, resp.Header.Get("Refresh"), body)
	}
	// ...an API or XHR client gets 503, Retry-After and JSON (admin's
	// server has not been asked for: this request starts it).
	admin := g.login("admin")
	resp, body = g.get(admin, "/user/admin/notebook/whoami", "Sec-Fetch-Mode", "cors")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(resp.Header.Get("Content-Type"), "json") || !strings.Contains(body, `"status":"starting"`) {
		t.Fatalf("XHR during start: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	eventually(t, 30*time.Second, "the app answers the browser", func() bool {
		resp, body := g.navigate(alice, "/user/alice/notebook/html")
		return resp.StatusCode == http.StatusOK && strings.Contains(body, "hello alice")
	})

	// A missing image: a clear page for the user, a log line for the admin.
	bob := g.login("bob")
	var page string
	eventually(t, 30*time.Second, "the missing image is reported", func() bool {
		resp, body := g.navigate(bob, "/user/bob/missing/")
		page = body
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, "hubgate/does-not-exist:1")
	})
	if !strings.Contains(page, "not available") {
		t.Errorf("missing image page: %s", page)
	}
	// A crashing app: the user is told, the log has its last output.
	eventually(t, 60*time.Second, "the crash is reported", func() bool {
		resp, body := g.navigate(bob, "/user/bob/crash/")
		page = body
		return resp.StatusCode == http.StatusBadGateway
	})
	if !strings.Contains(page, "stopped while starting") {
		t.Errorf("crash page: %s", page)
	}
	if !g.waitLog("crashing on purpose", 5*time.Second) {
		t.Errorf("the log lacks the crashed container's output")
	}
}
