package docker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/hubgate/hubgate/spawner"
)

// TestNetworkLockSparesUserNetworkLock: user "network"'s server "lock"
// coexists with the network-creation lock. Before the lock had a name of
// its own, taking the lock found that user's container under its name and,
// once it looked stale, force-removed it.
func TestNetworkLockSparesUserNetworkLock(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 60*time.Second)
	spec, tok := h.spec("network")
	spec.Server = "lock"
	spec.Env["HUBGATE_BASE_URL"] = baseURL("network", "lock")
	inst, err := h.s.Ensure(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	waitApp(t, inst, tok)

	h.s.lockStale = 0 // any container under the lock's name is stale at once
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	unlock, err := h.s.lockNetwork(lctx, testImage)
	if err != nil {
		t.Fatalf("take the lock: %v", err)
	}
	c, err := engine.ContainerInspect(ctx, networkLockName(h.cfg.Prefix))
	if err != nil {
		t.Fatalf("the lock container: %v", err)
	}
	if c.ID == inst.ID || c.Name == "/"+inst.Name {
		t.Fatalf("the lock is the user's container %s", inst.Name)
	}
	unlock()
	u, err := engine.ContainerInspect(ctx, inst.ID)
	if err != nil || !u.State.Running {
		t.Fatalf("user network's server lock after the lock was taken: %v (running %v)", err, err == nil && u.State.Running)
	}
	waitApp(t, inst, tok)
}

// TestNetworkLockStaleness: a lock left by a holder that died is broken
// once it is older than the threshold, and waited for until then.
func TestNetworkLockStaleness(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 60*time.Second)
	name := networkLockName(h.cfg.Prefix)
	leftover := func() string {
		resp, err := engine.ContainerCreate(ctx, &container.Config{Image: testImage,
			Labels: map[string]string{LabelDeployment: h.cfg.Prefix}}, &container.HostConfig{NetworkMode: "none"}, nil, nil, name)
		if err != nil {
			t.Fatal(err)
		}
		return resp.ID
	}

	id := leftover()
	h.s.lockStale = time.Hour
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	_, err := h.s.lockNetwork(wctx, testImage)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lockNetwork over a fresh lock = %v; want it to wait until its context ends", err)
	}
	if _, err := engine.ContainerInspect(ctx, id); err != nil {
		t.Fatalf("a fresh lock was broken: %v", err)
	}

	h.s.lockStale = 0
	start := time.Now()
	unlock, err := h.s.lockNetwork(ctx, testImage)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := engine.ContainerInspect(ctx, id); err == nil {
		t.Fatal("the stale lock is still there")
	}
	t.Logf("stale lock broken in %v", time.Since(start))
}

// TestLockNameNeverAUserContainer: no user and server escape to the lock's
// name, whatever they are (see also FuzzContainerNames in spawner).
func TestLockNameNeverAUserContainer(t *testing.T) {
	lock := networkLockName("hubgate")
	for _, us := range [][2]string{{"network", "lock"}, {"network.lock", ""}, {"network", ".lock"}, {".network-lock", "x"}} {
		if n := spawner.ContainerName("hubgate", us[0], us[1]); n == lock {
			t.Errorf("ContainerName(%q, %q) = the lock's name %q", us[0], us[1], n)
		}
	}
}
