package docker

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/hubgate/hubgate/spawner"
)

// TestHardenedHostConfig checks what the engine reports for a user's
// container: every capability dropped, no-new-privileges, the spec's
// limits, and the read-only root filesystem and added capabilities only
// when asked for.
func TestHardenedHostConfig(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 90*time.Second)

	plain, tok := h.spec("ivan")
	plain.Limits = spawner.Limits{MemoryBytes: 256 << 20, Pids: 1024}
	plain.Env["HOME"] = "/scratch" // files/NAME writes to the root filesystem (a folder uid 1000 owns)
	inst, err := h.s.Ensure(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	waitApp(t, inst, tok)
	c, err := engine.ContainerInspect(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	hc := c.HostConfig
	if !slices.Equal(hc.CapDrop, []string{"ALL"}) || len(hc.CapAdd) != 0 {
		t.Errorf("CapDrop %v CapAdd %v; want [ALL] and none", hc.CapDrop, hc.CapAdd)
	}
	if !slices.Contains(hc.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("SecurityOpt %v lacks no-new-privileges", hc.SecurityOpt)
	}
	if hc.PidsLimit == nil || *hc.PidsLimit != 1024 || hc.Memory != 256<<20 {
		t.Errorf("PidsLimit %v Memory %d; want 1024 and 256MiB", hc.PidsLimit, hc.Memory)
	}
	if hc.ReadonlyRootfs || len(hc.Tmpfs) != 0 {
		t.Errorf("ReadonlyRootfs %v Tmpfs %v without read_only", hc.ReadonlyRootfs, hc.Tmpfs)
	}
	if code, body := mustRequest(t, http.MethodPut, inst, "files/probe", tok, "x"); code/100 != 2 {
		t.Errorf("writing the root filesystem of a writable container: %d %s", code, body)
	}

	ro, tok := h.spec("judith")
	ro.ReadOnlyRootFS = true
	ro.CapAdd = []string{"NET_BIND_SERVICE"}
	ro.Env["HOME"] = "/scratch"
	inst, err = h.s.Ensure(ctx, ro)
	if err != nil {
		t.Fatal(err)
	}
	waitApp(t, inst, tok)
	c, err = engine.ContainerInspect(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	hc = c.HostConfig
	if !hc.ReadonlyRootfs || hc.Tmpfs["/tmp"] != tmpfsOptions {
		t.Errorf("ReadonlyRootfs %v Tmpfs %v; want true and /tmp", hc.ReadonlyRootfs, hc.Tmpfs)
	}
	if !slices.Equal(hc.CapDrop, []string{"ALL"}) || !slices.Equal(hc.CapAdd, []string{"CAP_NET_BIND_SERVICE"}) {
		t.Errorf("CapDrop %v CapAdd %v; want [ALL] and [CAP_NET_BIND_SERVICE] (the engine adds CAP_)", hc.CapDrop, hc.CapAdd)
	}
	if code, body := mustRequest(t, http.MethodPut, inst, "files/probe", tok, "x"); code/100 == 2 ||
		!strings.Contains(body, "read-only file system") {
		t.Errorf("writing the root filesystem of a read-only container: %d %s; want a read-only file system error", code, body)
	}
}

// TestNeighbourCannotSniff is the ARP capture of the outside review: a
// root process in one user's container announces a neighbour's IP address
// as its own and reads what the gateway sends there, the per-container
// token included. With the spawner's containers it cannot open a raw
// socket at all; the same program in a container with Docker's default
// capabilities, on the same network, captures the token (so this test
// would fail without the hardening).
func TestNeighbourCannotSniff(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 120*time.Second)

	victim, tok := h.spec("victim")
	vinst, err := h.s.Ensure(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	waitApp(t, vinst, tok)
	victimIP, _, _ := net.SplitHostPort(vinst.Addr)

	// The gateway's kept-alive connection to the victim, which also gives
	// the host its ARP entry for the victim.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute}}
	t.Cleanup(client.CloseIdleConnections)
	send := func(secret string, timeout time.Duration) error {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		u := "http://" + vinst.Addr + (&url.URL{Path: baseURL("victim", "notebook")}).EscapedPath()
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
		req.Header.Set("Authorization", "token "+secret)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	if err := send(tok, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	attacker := func(user string) spawner.Spec {
		s, _ := h.spec(user)
		s.Image = netTestImage
		s.Cmd = []string{"spoof", victimIP}
		return s
	}

	// A user container made by the spawner: no raw socket, no capability.
	if _, err := h.s.Ensure(ctx, attacker("mallory")); err != nil {
		t.Fatal(err)
	}
	out := waitLogs(t, h.s, "mallory", "RAW_SOCKET_ERROR")
	if !strings.Contains(out, "operation not permitted") || !strings.Contains(out, "CAPEFF 0000000000000000") {
		t.Errorf("hardened attacker: want EPERM and no effective capability:\n%s", out)
	}
	if err := send(tok, 5*time.Second); err != nil {
		t.Errorf("victim unreachable while the hardened attacker runs: %v", err)
	}

	// The same program with Docker's default capabilities captures the
	// token the gateway sends to the victim.
	eve := attacker("eve")
	vol, err := h.s.ensureVolume(ctx, eve.User)
	if err != nil {
		t.Fatal(err)
	}
	cfg, hostCfg, netCfg := h.s.containerConfig(eve, vol)
	hostCfg.CapDrop, hostCfg.CapAdd, hostCfg.SecurityOpt = nil, nil, nil
	resp, err := engine.ContainerCreate(ctx, cfg, hostCfg, netCfg, nil, spawner.ContainerName(h.cfg.Prefix, eve.User, eve.Server))
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLogs(t, h.s, "eve", "SPOOFING")
	secret := randHex(16)
	h.tokens = append(h.tokens, secret)
	want := "CAPTURED Authorization: token " + secret
	deadline := time.Now().Add(20 * time.Second)
	for {
		// The announcements win once the ARP entry's lock time (1 s) has
		// passed; the request's retransmissions then go to the attacker.
		_ = send(secret, 1500*time.Millisecond)
		out, _ := h.s.Logs(ctx, "eve", "notebook", 50)
		if strings.Contains(out, want) {
			t.Logf("with Docker's default capabilities the neighbour captured the token:\n%s", out)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control attacker (Docker's default capabilities) captured nothing, so this test proves nothing:\n%s", out)
		}
	}
}
