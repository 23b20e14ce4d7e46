package docker

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hubgate/hubgate/spawner"
)

// TestImageIdentity: ResolveImage names the image a reference stands for
// on the engine, and the running container's Instance carries the image
// ID it runs (the provenance's image_id), as `docker inspect` shows them.
func TestImageIdentity(t *testing.T) {
	h := newHarness(t)
	ctx := ctxFor(t, 60*time.Second)
	spec, _ := h.spec("ida")
	out, err := exec.Command("docker", "image", "inspect", "-f", "{{.Id}}", spec.Image).Output()
	if err != nil {
		t.Fatalf("docker image inspect %s: %v", spec.Image, err)
	}
	want := strings.TrimSpace(string(out))
	got, err := h.s.ResolveImage(ctx, spec.Image)
	if err != nil || got != want || !strings.HasPrefix(got, "sha256:") {
		t.Fatalf("ResolveImage = %q, %v; want %q", got, err, want)
	}
	if _, err := h.s.ResolveImage(ctx, "hubgate/no-such-image:"+randHex(4)); !errors.Is(err, spawner.ErrImageMissing) {
		t.Errorf("ResolveImage of a missing image: %v", err)
	}
	inst, err := h.s.Ensure(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if inst.ImageID != want {
		t.Errorf("Ensure's ImageID %q, want %q", inst.ImageID, want)
	}
	if g, err := h.s.Get(ctx, "ida", spec.Server); err != nil || g.ImageID != want {
		t.Errorf("Get's ImageID %q, %v", g.ImageID, err)
	}
}
