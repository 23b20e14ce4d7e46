package caddymodule

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOffboardDryRun lists a home on the real Docker engine whose owner is
// not in the policy, with and without a retention, and changes nothing.
func TestOffboardDryRun(t *testing.T) {
	name := fmt.Sprintf("hgoff%d", time.Now().UnixNano()%1_000_000_000)
	vol := name + "-home-bob"
	if out, err := exec.Command("docker", "volume", "create", "--label", "hubgate.deployment="+name, "--label", "hubgate.user=bob", vol).CombinedOutput(); err != nil {
		t.Fatalf("the Docker engine is needed: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "volume", "rm", "-f", vol).Run() })
	dir := t.TempDir()
	for _, tc := range []struct{ policy, want string }{
		{"teams:\n  t: {members: [alice]}\n", "never"},
		{"retention: 48h\nteams:\n  t: {members: [alice]}\n", "48h0m0s"},
	} {
		p := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(p, []byte(tc.policy), 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := offboardDryRun(&out, []string{p}, name, filepath.Join(dir, "storage"), "", time.Now()); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "bob") || !strings.Contains(out.String(), tc.want) || !strings.Contains(out.String(), "1 homes, 1 of users out of the policy") {
			t.Errorf("dry run with %q:\n%s", tc.policy, out.String())
		}
	}
	if err := exec.Command("docker", "volume", "inspect", vol).Run(); err != nil {
		t.Error("the dry run removed the volume")
	}
}
