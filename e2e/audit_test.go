package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAuditLogIsTamperEvident: the gateway's audit trail, written with a
// hash chain and signed checkpoints, verifies across a policy reload (whose
// access diff is one record) and a gateway restart; deleting, editing or
// swapping one line makes verify-audit name it.
func TestAuditLogIsTamperEvident(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	g := startGateway(t, gwOptions{env: map[string]string{"HUBGATE_AUDIT_LOG": logPath}})
	g.whoami(g.login("alice"), "alice")
	writeAtomic(t, g.dir+"/policy/policy.yaml", strings.Replace(basePolicy, "[alice, bob, admin]", "[alice, admin]", 1))
	if !g.waitLog(`"access_changes":["bob: - access`, 5*time.Second) {
		t.Errorf("the reload's access diff is not in the audit trail")
	}
	_, jwks := g.get(g.client(), "/hub/.well-known/jwks.json")
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, []byte(jwks), 0o644); err != nil {
		t.Fatal(err)
	}
	g.stop()
	g.start()
	g.whoami(g.login("alice"), "alice")
	g.stop()

	verify := func(file string) (string, error) {
		out, err := exec.Command(caddyBin, "hubgate", "verify-audit", "--jwks", jwksPath, file).CombinedOutput()
		return string(out), err
	}
	out, err := verify(logPath)
	if err != nil || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("an untouched log across a reload and a restart: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(raw), "\n")
	if len(lines) < 8 {
		t.Fatalf("only %d audit lines", len(lines))
	}
	tampered := map[string]func([]string) []string{
		"deleted": func(l []string) []string { return append(append([]string{}, l[:4]...), l[5:]...) },
		"edited": func(l []string) []string {
			c := append([]string{}, l...)
			c[4] = strings.Replace(c[4], `"user":"`, `"user":"x`, 1)
			if c[4] == l[4] {
				c[4] = strings.Replace(c[4], `"msg":"`, `"msg":"x`, 1)
			}
			return c
		},
		"swapped": func(l []string) []string {
			c := append([]string{}, l...)
			c[4], c[5] = c[5], c[4]
			return c
		},
	}
	for name, change := range tampered {
		f := filepath.Join(dir, name+".log")
		if err := os.WriteFile(f, []byte(strings.Join(change(lines), "")), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := verify(f)
		if err == nil || !strings.Contains(out, name+".log:") {
			t.Errorf("%s line not found: %v\n%s", name, err, out)
		}
	}
}

// TestCheckPolicyDiff: check-policy --diff prints what each user gains or
// loses, and fails on a broken side.
func TestCheckPolicyDiff(t *testing.T) {
	dir := t.TempDir()
	old, new := filepath.Join(dir, "old.yaml"), filepath.Join(dir, "new.yaml")
	os.WriteFile(old, []byte(basePolicy), 0o644)
	os.WriteFile(new, []byte(strings.Replace(basePolicy, "[alice, bob, admin]", "[alice, carol, admin]", 1)), 0o644)
	out, err := exec.Command(caddyBin, "hubgate", "check-policy", "--diff", old, new).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "bob: - access") || !strings.Contains(string(out), "carol: + access") {
		t.Fatalf("diff: %v\n%s", err, out)
	}
	os.WriteFile(new, []byte("images: [\n"), 0o644)
	if out, err := exec.Command(caddyBin, "hubgate", "check-policy", "--diff", old, new).CombinedOutput(); err == nil {
		t.Fatalf("a broken new policy passed:\n%s", out)
	}
}
