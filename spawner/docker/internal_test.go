package docker

import (
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
)

// TestInternalNetwork: with Internal set the network is created internal
// (no route out) and NetworkGateway gives the host's address on it, which
// the gateway reaches its containers from; an existing network that is
// not internal is refused, not used.
func TestInternalNetwork(t *testing.T) {
	h := newHarness(t)
	h.cfg.Internal = true
	h.s = h.newSpawner()
	ctx := ctxFor(t, 60*time.Second)
	if _, _, err := h.s.NetworkGateway(ctx, ""); !isNotFound(err) {
		t.Fatalf("before the network exists: %v, want ErrNotFound", err)
	}
	gw, subnet, err := h.s.NetworkGateway(ctx, testImage)
	if err != nil {
		t.Fatal(err)
	}
	n, err := engine.NetworkInspect(ctx, h.cfg.Network, network.InspectOptions{})
	if err != nil || !n.Internal {
		t.Fatalf("network internal = %v (%v)", n.Internal, err)
	}
	if !subnet.Contains(gw) {
		t.Errorf("gateway %s outside subnet %s", gw, subnet)
	}
	spec, tok := h.spec("alice")
	inst, err := h.s.Ensure(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	waitApp(t, inst, tok) // the host reaches the container on the internal network

	// Another deployment whose network exists and is not internal.
	other := newHarness(t)
	if _, err := engine.NetworkCreate(ctx, other.cfg.Network, network.CreateOptions{Driver: "bridge",
		Labels: map[string]string{LabelDeployment: other.cfg.Prefix}}); err != nil {
		t.Fatal(err)
	}
	other.cfg.Internal = true
	other.s = other.newSpawner()
	spec, _ = other.spec("bob")
	_, err = other.s.Ensure(ctx, spec)
	if err == nil || !strings.Contains(err.Error(), "is not an internal network") {
		t.Fatalf("start on a network with a way out: %v", err)
	}
	if _, gerr := other.s.Get(ctx, "bob", spec.Server); !isNotFound(gerr) {
		t.Errorf("a container was created anyway: %v", gerr)
	}
}
