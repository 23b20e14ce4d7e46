package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestIdleServerCulledVolumeKept(t *testing.T) {
	policy := strings.Replace(basePolicy, "    images: [notebook]\n", "    images: [notebook]\n    idle_timeout: 3s\n", 1)
	g := startGateway(t, gwOptions{policy: policy, env: map[string]string{"HUBGATE_CULL_INTERVAL": "500ms"}})
	alice := g.login("alice")
	g.whoami(alice, "alice")
	if resp, _ := g.do(alice, http.MethodPut, "/user/alice/notebook/files/keep.txt", strings.NewReader("kept")); resp.StatusCode/100 != 2 {
		t.Fatalf("write: %d", resp.StatusCode)
	}

	// Websocket data frames are activity: the server outlives its idle
	// timeout while they flow.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, g.wsURL("/user/alice/notebook/ws"), &websocket.DialOptions{HTTPClient: alice})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	for range 10 {
		if err := ws.Write(ctx, websocket.MessageText, []byte("still here")); err != nil {
			t.Fatalf("write: %v", err)
		}
		if _, _, err := ws.Read(ctx); err != nil {
			t.Fatalf("read: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n := len(g.containers("alice")); n != 1 {
		t.Fatalf("server culled while its websocket carried data")
	}
	// Pings are not activity: with only pings, it is culled.
	pingCtx, stopPings := context.WithCancel(ctx)
	go func() {
		for pingCtx.Err() == nil {
			_ = ws.Ping(pingCtx)
			time.Sleep(300 * time.Millisecond)
		}
	}()
	go func() { _, _, _ = ws.Read(pingCtx) }() // answer pongs
	eventually(t, 15*time.Second, "idle server culled", func() bool { return len(g.containers("alice")) == 0 })
	stopPings()
	if !g.waitLog(`"msg":"cull","user":"alice","server":"notebook","reason":"idle"`, 2*time.Second) {
		t.Errorf("cull not audited")
	}
	if !strings.Contains(g.metricsText(), `hubgate_culls_total{reason="idle"} 1`) {
		t.Errorf("cull not counted in metrics")
	}
	// The volume stays, and the file is there after the next start.
	resp, body := g.getReady(alice, "/user/alice/notebook/files/keep.txt")
	if resp.StatusCode != http.StatusOK || body != "kept" {
		t.Fatalf("file after cull and restart: %d %q", resp.StatusCode, body)
	}
}

func (g *gateway) wsURL(path string) string {
	return "wss://localhost:" + strconv.Itoa(g.httpsPort) + path
}

func TestMaxAgeCulls(t *testing.T) {
	policy := strings.Replace(basePolicy, "    images: [notebook]\n", "    images: [notebook]\n    max_age: 2s\n", 1)
	g := startGateway(t, gwOptions{policy: policy, env: map[string]string{"HUBGATE_CULL_INTERVAL": "500ms"}})
	alice := g.login("alice")
	g.whoami(alice, "alice")
	// Busy or not, an old server goes: keep it busy and wait for the cull.
	eventually(t, 15*time.Second, "busy but old server culled", func() bool {
		g.get(alice, "/user/alice/notebook/whoami")
		return strings.Contains(g.logs(), `"msg":"cull","user":"alice","server":"notebook","reason":"max_age"`)
	})
}

func TestStartQueueOrderAndPosition(t *testing.T) {
	policy := strings.Replace(basePolicy, `    description: "Test app"
`, `    description: "Test app"
    env: {TESTAPP_START_DELAY: "2s"}
`, 1)
	g := startGateway(t, gwOptions{policy: policy, env: map[string]string{
		"HUBGATE_MAX_CONCURRENT_STARTS": "1",
		"HUBGATE_START_WAIT":            "1ms",
	}})
	users := []string{"alice", "bob", "admin"}
	clients := map[string]*http.Client{}
	for _, u := range users {
		clients[u] = g.login(u)
	}
	for i, u := range users {
		resp, body := g.get(clients[u], "/user/"+u+"/notebook/whoami")
		var st struct {
			Status   string `json:"status"`
			Position int    `json:"queue_position"`
		}
		_ = json.Unmarshal([]byte(body), &st)
		if resp.StatusCode != http.StatusServiceUnavailable || st.Status != "starting" || st.Position != i {
			t.Fatalf("%s: %d %s, want 503 starting at queue position %d", u, resp.StatusCode, body, i)
		}
	}
	// The browser's progress page shows the place in line.
	resp, page := g.navigate(clients["admin"], "/user/admin/notebook/")
	if resp.StatusCode != http.StatusAccepted || !regexp.MustCompile(`id="position">[12]<`).MatchString(page) {
		t.Fatalf("progress page for a queued start: %d\n%s", resp.StatusCode, page)
	}
	for _, u := range users {
		if resp, _ := g.getReady(clients[u], "/user/"+u+"/notebook/whoami"); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s never served: %d", u, resp.StatusCode)
		}
	}
	// They started in arrival order.
	logs := g.logs()
	last := -1
	for _, u := range users {
		i := strings.Index(logs, `"msg":"spawn","user":"`+u+`"`)
		if i < 0 || i < last {
			t.Fatalf("spawn of %s out of order (at %d, previous at %d)", u, i, last)
		}
		last = i
	}
	// Each spawn record says where its time went: the app's 2 s delay in
	// "waiting for the app to answer", and for those after the first, the
	// wait for the one start slot.
	for i, u := range users {
		line := logs[strings.Index(logs, `"msg":"spawn","user":"`+u+`"`):]
		line = line[:strings.IndexByte(line, '\n')]
		var rec struct {
			Steps []struct {
				Step string  `json:"step"`
				MS   float64 `json:"ms"`
			} `json:"steps"`
		}
		if err := json.Unmarshal([]byte("{"+line), &rec); err != nil {
			t.Fatalf("spawn record of %s: %v\n%s", u, err, line)
		}
		took := map[string]float64{}
		for _, s := range rec.Steps {
			took[s.Step] = s.MS
		}
		if took["waiting for the app to answer"] < 1900 {
			t.Errorf("spawn of %s: steps %+v, want about 2000 ms waiting for the app", u, rec.Steps)
		}
		if q, ok := took["waiting for a free start slot"]; (i > 0) != ok || i > 0 && q < 1000 {
			t.Errorf("spawn of %s (#%d in line): steps %+v, want a wait for the start slot after the first", u, i+1, rec.Steps)
		}
	}
}

func TestLimitsAppliedToContainer(t *testing.T) {
	policy := strings.Replace(basePolicy, "    images: [notebook]\n", "    images: [notebook]\n    limits: {memory: 256MiB, cpus: 0.5, pids: 128}\n", 1)
	g := startGateway(t, gwOptions{policy: policy})
	alice := g.login("alice")
	g.whoami(alice, "alice")
	out := docker("inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}", g.containers("alice")[0])
	if out != "268435456 500000000 128" {
		t.Fatalf("docker inspect limits = %q, want memory 268435456, NanoCpus 500000000, pids 128", out)
	}
}

func TestKilledContainerRespawnedOnNextRequest(t *testing.T) {
	g := startGateway(t, gwOptions{})
	alice := g.login("alice")
	g.whoami(alice, "alice")
	g.do(alice, http.MethodPut, "/user/alice/notebook/files/k.txt", strings.NewReader("k"))
	id := g.containers("alice")[0]
	docker("kill", id)
	// The very next request is served by a new container with the same
	// volume; nobody sees a gateway error.
	resp, body := g.getReady(alice, "/user/alice/notebook/files/k.txt")
	if resp.StatusCode != http.StatusOK || body != "k" {
		t.Fatalf("after kill: %d %q", resp.StatusCode, body)
	}
	if ids := g.containers("alice"); len(ids) != 1 || ids[0] == id {
		t.Fatalf("containers after kill: %v (killed %s)", ids, id)
	}
}

// flakyEngine is a Docker socket proxy the test can take down and bring
// back, standing in for an engine restart without touching the real one.
// It counts the API calls it passes on.
type flakyEngine struct {
	sock  string
	mu    sync.Mutex
	srv   *http.Server
	calls atomic.Int64
}

func newFlakyEngine(t *testing.T) *flakyEngine {
	f := &flakyEngine{sock: filepath.Join(t.TempDir(), "docker.sock")}
	f.up(t)
	t.Cleanup(f.down)
	return f
}

func (f *flakyEngine) up(t *testing.T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	os.Remove(f.sock)
	l, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: "docker"})
	rp.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", "/var/run/docker.sock")
	}}
	rp.FlushInterval = -1
	f.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		rp.ServeHTTP(w, r)
	})}
	go f.srv.Serve(l)
}

func (f *flakyEngine) down() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.srv != nil {
		f.srv.Close()
		f.srv = nil
	}
	os.Remove(f.sock)
}

func TestEngineDownThenBack(t *testing.T) {
	engine := newFlakyEngine(t)
	g := startGateway(t, gwOptions{env: map[string]string{"DOCKER_HOST": "unix://" + engine.sock}})
	alice := g.login("alice")
	bob := g.login("bob")
	g.whoami(alice, "alice")

	engine.down()
	// Running servers keep working: the proxy path needs no engine.
	if resp, _ := g.get(alice, "/user/alice/notebook/whoami"); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice with the engine down: %d", resp.StatusCode)
	}
	// A new start gets a clear 503 page.
	var page string
	eventually(t, 20*time.Second, "engine-down page", func() bool {
		resp, body := g.navigate(bob, "/user/bob/notebook/")
		page = body
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, "container engine cannot be reached")
	})
	if !strings.Contains(page, "Try again") {
		t.Errorf("engine-down page offers no retry:\n%s", page)
	}
	resp, body := g.get(bob, "/user/bob/notebook/whoami")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("API client with the engine down: %d %s", resp.StatusCode, body)
	}

	engine.up(t)
	// hubgate recovers by itself.
	eventually(t, 30*time.Second, "bob served after the engine came back", func() bool {
		resp, _ := g.get(bob, "/user/bob/notebook/whoami")
		return resp.StatusCode == http.StatusOK
	})
}

func TestWebsocketSurvivesPolicyReload(t *testing.T) {
	g := startGateway(t, gwOptions{})
	alice := g.login("alice")
	g.whoami(alice, "alice")
	ctx, ws := g.dialEcho(alice, "alice")
	echo := func(msg string) {
		t.Helper()
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
		if _, got, err := ws.Read(ctx); err != nil || string(got) != msg {
			t.Fatalf("echo %q: %q %v", msg, got, err)
		}
	}
	echo("before")
	writeAtomic(t, g.dir+"/policy/policy.yaml", strings.Replace(basePolicy, "[alice, bob, admin]", "[alice, bob, admin, carol]", 1))
	if !g.waitLog(`"msg":"policy reload","ok":true`, 5*time.Second) {
		t.Fatal("policy not reloaded")
	}
	echo("after")
}

func TestRemovedUsersWebsocketClosedOnReload(t *testing.T) {
	g := startGateway(t, gwOptions{})
	alice := g.login("alice")
	g.whoami(alice, "alice")
	ctx, ws := g.dialEcho(alice, "alice")
	if err := ws.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ws.Read(ctx); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, g.dir+"/policy/policy.yaml", strings.Replace(basePolicy, "[alice, bob, admin]", "[bob, admin]", 1))
	// The open websocket of the removed user ends, without any request.
	readErr := make(chan error, 1)
	go func() {
		_, _, err := ws.Read(ctx)
		readErr <- err
	}()
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("read returned a message, want the connection closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a removed user's websocket stayed open after the policy reload")
	}
	if !g.waitLog(`"streams_closed":1`, 2*time.Second) {
		t.Errorf("closing the stream not logged")
	}
}

// dialEcho opens a websocket to the user's test app echo endpoint through
// the gateway; it is closed when the test ends.
func (g *gateway) dialEcho(c *http.Client, user string) (context.Context, *websocket.Conn) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	g.t.Cleanup(cancel)
	ws, _, err := websocket.Dial(ctx, g.wsURL("/user/"+user+"/notebook/ws"), &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		g.t.Fatalf("websocket through the gateway: %v", err)
	}
	g.t.Cleanup(func() { ws.CloseNow() })
	return ctx, ws
}
