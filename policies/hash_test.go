package policies

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyHash: the hash names the policy's text: Load and Parse of one
// file agree, an edit changes it, the grant carries it.
func TestPolicyHash(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "policy.yaml")
	src := "images:\n  nb: {image: x, port: 8888}\nteams:\n  t: {members: [alice], images: [nb]}\n"
	if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := Parse(f, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loaded.Hash, "sha256:") || len(loaded.Hash) != len("sha256:")+64 || loaded.Hash != parsed.Hash {
		t.Fatalf("Load %q, Parse %q", loaded.Hash, parsed.Hash)
	}
	edited, err := Parse(f, []byte(strings.Replace(src, "8888", "8889", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if edited.Hash == loaded.Hash {
		t.Error("an edit kept the hash")
	}
	if g := loaded.Grant("alice", nil); g.PolicyHash != loaded.Hash {
		t.Errorf("grant's policy hash %q", g.PolicyHash)
	}
}
