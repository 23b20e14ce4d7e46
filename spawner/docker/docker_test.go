package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hubgate/hubgate/spawner"
)

// testCounter numbers the deployments of this run.
var testCounter atomic.Int64

// harness is one test's deployment: its Spawner, its log and its secrets.
type harness struct {
	t      *testing.T
	cfg    Config
	s      *Spawner
	core   zapcore.Core
	logs   *observer.ObservedLogs
	tokens []string // every token handed to Ensure, to check the logs
}

// newHarness returns a Spawner with a prefix (and network) of its own, and
// registers a cleanup that removes everything of that prefix.
func newHarness(t *testing.T) *harness {
	t.Helper()
	prefix := fmt.Sprintf("%s-%d", runID, testCounter.Add(1))
	h := &harness{t: t, cfg: Config{Prefix: prefix, Network: prefix, Isolate: true, APITimeout: 20 * time.Second}}
	h.core, h.logs = observer.New(zap.DebugLevel)
	t.Cleanup(func() {
		if err := sweep(prefix); err != nil {
			t.Errorf("clean up %s: %v", prefix, err)
		}
	})
	h.s = h.newSpawner()
	t.Cleanup(func() {
		for _, tok := range h.tokens {
			for _, e := range h.logs.All() {
				if b, _ := json.Marshal(e.ContextMap()); strings.Contains(e.Message+string(b), tok) {
					t.Errorf("a log entry contains a token: %s %s", e.Message, b)
				}
			}
		}
	})
	return h
}

// newSpawner returns another Spawner on the harness's deployment, as a
// second gateway process or a restarted one would have.
func (h *harness) newSpawner() *Spawner {
	h.t.Helper()
	s, err := New(h.cfg, zap.New(h.core))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = s.Close() })
	return s
}

// spec returns a testapp spec for user's server "notebook" with a fresh
// token, which it returns too.
func (h *harness) spec(user string) (spawner.Spec, string) {
	tok := randHex(16)
	h.tokens = append(h.tokens, tok)
	return spawner.Spec{
		User:   user,
		Server: "notebook",
		Image:  testImage,
		Port:   8888,
		Env: map[string]string{
			"HUBGATE_TOKEN":    tok,
			"HUBGATE_USER":     user,
			"HUBGATE_BASE_URL": baseURL(user, "notebook"),
		},
		HomeMount: "/home/hubgate",
		Nonce:     randHex(8),
	}, tok
}

func baseURL(user, server string) string { return "/user/" + user + "/" + server + "/" }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// request sends one request to the app at inst.Addr.
func request(method string, inst spawner.Instance, path, token, body string) (int, string, error) {
	u := "http://" + inst.Addr + (&url.URL{Path: baseURL(inst.User, inst.Server) + path}).EscapedPath()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "token "+token)
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitApp polls the app until it answers (Ensure does not wait for it).
func waitApp(t *testing.T, inst spawner.Instance, token string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, _, err := request(http.MethodGet, inst, "", token, "")
		if err == nil && code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("app at %s did not answer 200 in time: code %d, err %v", inst.Addr, code, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mustRequest is request that fails the test on transport errors.
func mustRequest(t *testing.T, method string, inst spawner.Instance, path, token, body string) (int, string) {
	t.Helper()
	code, b, err := request(method, inst, path, token, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return code, b
}

func TestNewValidatesWithoutEngine(t *testing.T) {
	for _, p := range []string{"Hubgate", "-x", "a_b", "a.b", strings.Repeat("a", 41)} {
		if _, err := New(Config{Prefix: p, Host: "tcp://192.0.2.1:1"}, nil); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	s, err := New(Config{Host: "tcp://192.0.2.1:1"}, nil) // unroutable: must not be dialled
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := s.Config()
	if c.Prefix != "hubgate" || c.Network != "hubgate" || c.APITimeout != 30*time.Second || c.StopTimeout != 5*time.Second {
		t.Errorf("defaults = %+v", c)
	}
}

func TestEnsureCreatesContainerAndVolume(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 60*time.Second)
	user := "ålice.b-x"
	spec, tok := h.spec(user)
	spec.Limits = spawner.Limits{MemoryBytes: 256 << 20, NanoCPUs: 500_000_000, Pids: 100}

	start := time.Now()
	inst, err := h.s.Ensure(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Ensure (create+start) took %v", time.Since(start))
	wantName := spawner.ContainerName(h.cfg.Prefix, user, "notebook")
	if inst.ID == "" || inst.Name != wantName || inst.User != user || inst.Server != "notebook" ||
		inst.Image != testImage || inst.Nonce != spec.Nonce || !inst.Running || inst.Status != "running" ||
		inst.Addr == "" || inst.Created.IsZero() || inst.Started.IsZero() {
		t.Fatalf("instance = %+v", inst)
	}

	c, err := engine.ContainerInspect(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		LabelDeployment: h.cfg.Prefix, LabelUser: user, LabelServer: "notebook", LabelImage: testImage,
		LabelNonce: spec.Nonce, LabelPort: "8888",
	} {
		if got := c.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if _, err := time.Parse(time.RFC3339, c.Config.Labels[LabelCreated]); err != nil {
		t.Errorf("label %s: %v", LabelCreated, err)
	}
	if len(c.HostConfig.PortBindings) != 0 || c.HostConfig.PublishAllPorts {
		t.Errorf("ports published: %v", c.HostConfig.PortBindings)
	}
	for p, b := range c.NetworkSettings.Ports {
		if len(b) > 0 {
			t.Errorf("port %s bound on the host: %v", p, b)
		}
	}
	if len(c.NetworkSettings.Networks) != 1 || c.NetworkSettings.Networks[h.cfg.Network] == nil {
		t.Errorf("networks = %v, want only %s", c.NetworkSettings.Networks, h.cfg.Network)
	}
	if c.HostConfig.RestartPolicy.Name != "no" {
		t.Errorf("restart policy = %q", c.HostConfig.RestartPolicy.Name)
	}
	if c.Config.Hostname != spawner.EscapeName(user) {
		t.Errorf("hostname = %q, want %q", c.Config.Hostname, spawner.EscapeName(user))
	}
	r := c.HostConfig.Resources
	if r.Memory != 256<<20 || r.NanoCPUs != 500_000_000 || r.PidsLimit == nil || *r.PidsLimit != 100 {
		t.Errorf("resources: memory %d, nano cpus %d, pids %v", r.Memory, r.NanoCPUs, r.PidsLimit)
	}
	if !contains(c.Config.Env, "HOME=/home/hubgate") {
		t.Errorf("HOME not set: %d env entries", len(c.Config.Env))
	}
	if len(c.Mounts) != 1 || c.Mounts[0].Type != "volume" || c.Mounts[0].Name != spawner.VolumeName(h.cfg.Prefix, user) ||
		c.Mounts[0].Destination != "/home/hubgate" {
		t.Errorf("mounts = %+v", c.Mounts)
	}

	v, err := engine.VolumeInspect(ctx, spawner.VolumeName(h.cfg.Prefix, user))
	if err != nil {
		t.Fatalf("volume: %v", err)
	}
	if v.Labels[LabelDeployment] != h.cfg.Prefix || v.Labels[LabelUser] != user {
		t.Errorf("volume labels = %v", v.Labels)
	}
	n, err := engine.NetworkInspect(ctx, h.cfg.Network, network.InspectOptions{})
	if err != nil {
		t.Fatalf("network: %v", err)
	}
	if n.Driver != "bridge" || n.Labels[LabelDeployment] != h.cfg.Prefix || n.Options[iccOption] != "false" {
		t.Errorf("network: driver %s labels %v options %v", n.Driver, n.Labels, n.Options)
	}

	waitApp(t, inst, tok)
	t.Logf("create to app answering: %v", time.Since(start))
	if code, body := mustRequest(t, http.MethodGet, inst, "", "", ""); code != http.StatusForbidden {
		t.Errorf("without token: %d %s", code, body)
	}
	if code, _ := mustRequest(t, http.MethodGet, inst, "", "wrong", ""); code != http.StatusForbidden {
		t.Errorf("wrong token: %d", code)
	}
	code, body := mustRequest(t, http.MethodGet, inst, "whoami", tok, "")
	var who struct{ User, Hostname string }
	if err := json.Unmarshal([]byte(body), &who); code != http.StatusOK || err != nil {
		t.Fatalf("whoami: %d %v %s", code, err, body)
	}
	if who.User != user || who.Hostname != spawner.EscapeName(user) {
		t.Errorf("whoami = %+v", who)
	}
}

func TestEnsureTwiceAndGet(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 60*time.Second)
	if _, err := h.s.Get(ctx, "bob", "notebook"); !errors.Is(err, spawner.ErrNotFound) {
		t.Fatalf("Get before Ensure: %v, want ErrNotFound", err)
	}
	spec, _ := h.spec("bob")
	a, err := h.s.Ensure(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	spec2, _ := h.spec("bob") // another nonce: the running container wins
	start := time.Now()
	b, err := h.s.Ensure(ctx, spec2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Ensure of a running server took %v", time.Since(start))
	if a.ID != b.ID || b.Nonce != spec.Nonce || a.Addr != b.Addr {
		t.Errorf("second Ensure = %+v, first %+v", b, a)
	}
	g, err := h.s.Get(ctx, "bob", "notebook")
	if err != nil || g.ID != a.ID || g.Addr != a.Addr || g.Started.IsZero() {
		t.Errorf("Get = %+v, %v", g, err)
	}
}

func TestEnsureConcurrent(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 90*time.Second)
	// Four Spawners stand for four gateway processes, five requests each.
	spawners := []*Spawner{h.s, h.newSpawner(), h.newSpawner(), h.newSpawner()}
	spec, tok := h.spec("carol")
	const n = 20
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst, err := spawners[i%len(spawners)].Ensure(ctx, spec)
			ids[i], errs[i] = inst.ID, err
		}()
	}
	wg.Wait()
	t.Logf("%d concurrent Ensure calls took %v; %d saw a name conflict, %d containers created",
		n, time.Since(start),
		h.logs.FilterMessage("container created concurrently by someone else").Len(),
		h.logs.FilterMessage("created container").Len())
	// Exactly one container ever starts. (On a fresh engine, racing
	// processes can make duplicate networks; a container created on the
	// losing side is removed before it starts, and the call retries.)
	started := map[string]bool{}
	for _, e := range h.logs.FilterMessage("started container").All() {
		started[e.ContextMap()["container_id"].(string)] = true
	}
	if len(started) != 1 {
		t.Errorf("%d containers started, want 1", len(started))
	}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("call %d: %v", i, errs[i])
		} else if ids[i] != ids[0] {
			t.Errorf("call %d got container %s, call 0 got %s", i, ids[i], ids[0])
		}
	}
	list, err := h.s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != ids[0] {
		t.Fatalf("List = %+v, want exactly container %s", list, ids[0])
	}
	waitApp(t, list[0], tok)
}

func TestStopKeepsVolume(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 90*time.Second)
	spec, tok := h.spec("dave")
	a, err := h.s.Ensure(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	waitApp(t, a, tok)
	if code, body := mustRequest(t, http.MethodPut, a, "files/notes.txt", tok, "kept across restarts"); code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if err := h.s.RemoveVolume(ctx, "dave"); err == nil {
		t.Fatal("RemoveVolume succeeded while a container uses the volume")
	}

	start := time.Now()
	if err := h.s.Stop(ctx, "dave", "notebook"); err != nil {
		t.Fatal(err)
	}
	t.Logf("Stop took %v", time.Since(start))
	if _, err := h.s.Get(ctx, "dave", "notebook"); !errors.Is(err, spawner.ErrNotFound) {
		t.Errorf("Get after Stop: %v, want ErrNotFound", err)
	}
	if err := h.s.Stop(ctx, "dave", "notebook"); !errors.Is(err, spawner.ErrNotFound) {
		t.Errorf("second Stop: %v, want ErrNotFound", err)
	}
	if _, err := engine.VolumeInspect(ctx, spawner.VolumeName(h.cfg.Prefix, "dave")); err != nil {
		t.Fatalf("volume gone after Stop: %v", err)
	}

	b, err := h.s.Ensure(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if b.ID == a.ID {
		t.Error("Ensure after Stop returned the removed container")
	}
	waitApp(t, b, tok)
	if code, body := mustRequest(t, http.MethodGet, b, "files/notes.txt", tok, ""); code != http.StatusOK || body != "kept across restarts" {
		t.Errorf("file after restart: %d %q", code, body)
	}

	if err := h.s.Stop(ctx, "dave", "notebook"); err != nil {
		t.Fatal(err)
	}
	if err := h.s.RemoveVolume(ctx, "dave"); err != nil {
		t.Fatalf("RemoveVolume: %v", err)
	}
	if err := h.s.RemoveVolume(ctx, "dave"); !errors.Is(err, spawner.ErrNotFound) {
		t.Errorf("second RemoveVolume: %v, want ErrNotFound", err)
	}
}

func TestExitedContainerIsRecreated(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 60*time.Second)
	spec, tok := h.spec("erin")
	a, err := h.s.Ensure(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.ContainerStop(ctx, a.ID, containerStopNow()); err != nil {
		t.Fatal(err)
	}
	g, err := h.s.Get(ctx, "erin", "notebook")
	if err != nil || g.Running || g.Status != "exited" || g.Addr != "" {
		t.Fatalf("Get of stopped container = %+v, %v; want exited without Addr", g, err)
	}
	b, err := h.s.Ensure(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if b.ID == a.ID || !b.Running {
		t.Fatalf("Ensure after exit = %+v; want a new running container", b)
	}
	waitApp(t, b, tok)
}

// createBehindOurBack creates (without starting) the container Ensure
// would create for spec, as another gateway process could have left it,
// with an optional entrypoint override.
func createBehindOurBack(t *testing.T, h *harness, spec spawner.Spec, entrypoint ...string) string {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	vol, err := h.s.ensureVolume(ctx, spec.User)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.s.ensureNetwork(ctx, testImage); err != nil {
		t.Fatal(err)
	}
	cfg, hostCfg, netCfg := h.s.containerConfig(spec, vol)
	if len(entrypoint) > 0 {
		cfg.Entrypoint = entrypoint
	}
	resp, err := engine.ContainerCreate(ctx, cfg, hostCfg, netCfg, nil, spawner.ContainerName(h.cfg.Prefix, spec.User, spec.Server))
	if err != nil {
		t.Fatal(err)
	}
	return resp.ID
}

func TestCreatedContainerIsStarted(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 60*time.Second)
	spec, tok := h.spec("judy")
	id := createBehindOurBack(t, h, spec)
	inst, err := h.s.Ensure(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if inst.ID != id || !inst.Running {
		t.Fatalf("Ensure = %+v; want the created container %s, running", inst, id)
	}
	waitApp(t, inst, tok)
}

func TestFailedStartIsRecreated(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 60*time.Second)
	spec, tok := h.spec("ivan")
	id := createBehindOurBack(t, h, spec, "/no-such-binary")
	if err := engine.ContainerStart(ctx, id, container.StartOptions{}); err == nil {
		t.Fatal("start of a missing entrypoint succeeded")
	}
	g, err := h.s.Get(ctx, "ivan", "notebook")
	if err != nil || g.Running || g.Addr != "" {
		t.Fatalf("Get after failed start = %+v, %v", g, err)
	}
	t.Logf("after a failed start the container is %q", g.Status)
	inst, err := h.s.Ensure(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if inst.ID == id {
		t.Error("the container whose start failed was reused")
	}
	waitApp(t, inst, tok)
}

func TestImageMissing(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 30*time.Second)
	spec, _ := h.spec("frank")
	spec.Image = "hubgate/no-such-image:" + randHex(4)
	_, err := h.s.Ensure(ctx, spec)
	if !errors.Is(err, spawner.ErrImageMissing) || !strings.Contains(err.Error(), spec.Image) {
		t.Fatalf("Ensure = %v, want ErrImageMissing naming %s", err, spec.Image)
	}
	list, err := h.s.List(ctx)
	if err != nil || len(list) != 0 {
		t.Errorf("List = %v, %v; want no container", list, err)
	}
}

func TestLogs(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 60*time.Second)
	if _, err := h.s.Logs(ctx, "gina", "notebook", 10); !errors.Is(err, spawner.ErrNotFound) {
		t.Fatalf("Logs before Ensure: %v, want ErrNotFound", err)
	}

	// An app that refuses to start: its exit and its output must be visible.
	bad, _ := h.spec("gina")
	delete(bad.Env, "HUBGATE_TOKEN")
	if inst, err := h.s.Ensure(ctx, bad); err != nil {
		t.Logf("Ensure of a failing app: %v", err)
	} else {
		t.Logf("Ensure of a failing app returned before it exited: %s", inst.Status)
	}
	waitLogs(t, h.s, "gina", "HUBGATE_TOKEN is empty")
	// Its output is visible a moment before the engine sees it exit; an
	// Ensure in that moment finds it running and returns it (the hub's
	// readiness wait then sees it exit).
	for deadline := time.Now().Add(15 * time.Second); ; {
		inst, err := h.s.Get(ctx, "gina", "notebook")
		if err != nil {
			t.Fatalf("Get of the failing app: %v", err)
		}
		if !inst.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failing app still runs 15 s after its error: %s", inst.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The next Ensure replaces the exited container.
	spec, tok := h.spec("gina")
	inst, err := h.s.Ensure(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	waitApp(t, inst, tok)
	out := waitLogs(t, h.s, "gina", "testapp listening on :8888 prefix /user/gina/notebook/")
	if strings.Contains(out, "HUBGATE_TOKEN is empty") {
		t.Errorf("logs of the new container show the old one's output:\n%s", out)
	}
}

// waitLogs polls Logs until its output contains want.
func waitLogs(t *testing.T, s *Spawner, user, want string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := s.Logs(context.Background(), user, "notebook", 20)
		if err == nil && strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs never showed %q: %q, %v", want, out, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestListAfterRestart(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 60*time.Second)
	want := map[string]spawner.Instance{}
	for _, u := range []string{"hank", "hank.b", "home"} {
		spec, _ := h.spec(u)
		inst, err := h.s.Ensure(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		want[inst.ID] = inst
	}
	if err := h.s.Close(); err != nil {
		t.Fatal(err)
	}

	fresh := h.newSpawner() // a restarted gateway
	list, err := fresh.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(want) {
		t.Fatalf("List = %d servers, want %d: %+v", len(list), len(want), list)
	}
	for _, got := range list {
		w, ok := want[got.ID]
		if !ok {
			t.Errorf("unexpected server %+v", got)
			continue
		}
		if got.Name != w.Name || got.User != w.User || got.Server != w.Server || got.Image != w.Image ||
			got.Nonce != w.Nonce || got.Addr != w.Addr || !got.Running || got.Status != "running" || got.Created.IsZero() {
			t.Errorf("List entry = %+v, Ensure gave %+v", got, w)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
