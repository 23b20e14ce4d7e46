package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubgate/hubgate/spawner/contract"
)

// TestProvenanceAfterSync: the file in the home holds the gateway's part
// and each repo's commit after the sync (a fast-forward included), a
// local edit shows as dirty, a repo that could not be reached has no
// commit, and the marker line carries the same repos.
func TestProvenanceAfterSync(t *testing.T) {
	t.Parallel()
	srv := newGitServer(t)
	up := srv.newRepo(t, "team/analysis", map[string]string{"README.md": "v1\n"})
	home := t.TempDir()
	cfg := testConfig(t, home, srv.url, "team/analysis", "team/missing")
	gateway := `{"user":"alice","server":"notebook","image":"hubgate/jupyter-debian:latest","image_id":"sha256:abc","policy_hash":"sha256:def","limits":{"memory_bytes":1073741824}}`

	sync := func() (map[string]any, []contract.ProvenanceRepo, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), cfg.SyncTimeout)
		defer cancel()
		var out bytes.Buffer
		writeProvenance(cfg, gateway, setup(ctx, cfg), &out)
		raw, err := os.ReadFile(filepath.Join(home, ".hubgate", "provenance.json"))
		if err != nil {
			t.Fatalf("no provenance file: %v (stderr %s)", err, cfg.Stderr)
		}
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("provenance file: %v\n%s", err, raw)
		}
		var rep contract.ProvenanceReport
		line, ok := strings.CutPrefix(strings.TrimSpace(out.String()), contract.ProvenanceMarker)
		if !ok || json.Unmarshal([]byte(line), &rep) != nil {
			t.Fatalf("marker line %q", out.String())
		}
		return doc, rep.Repos, string(raw)
	}
	head := func() string { return git(t, up.work, "rev-parse", "HEAD") }

	doc, repos, raw := sync()
	if doc["user"] != "alice" || doc["image_id"] != "sha256:abc" || doc["policy_hash"] != "sha256:def" || doc["repos_reported_by"] != "hubgate-entrypoint" {
		t.Fatalf("gateway part lost:\n%s", raw)
	}
	if len(repos) != 2 || repos[0].Repo != "team/analysis" || repos[0].Commit != head() || repos[0].Branch != "main" || repos[0].Dirty ||
		!strings.HasPrefix(repos[0].Sync, "cloned from") {
		t.Fatalf("after the clone: %+v\n%s", repos, raw)
	}
	if repos[1].Repo != "team/missing" || repos[1].Commit != "" || !strings.Contains(repos[1].Sync, "not cloned") {
		t.Errorf("missing repo: %+v", repos[1])
	}
	if strings.Contains(raw, token) {
		t.Fatal("the token reached the provenance file")
	}

	// A new upstream commit is fast-forwarded to; a local edit makes the
	// work tree dirty.
	up.commit(t, "second", map[string]string{"notes.md": "n\n"})
	writeFile(t, filepath.Join(home, "repos", "analysis", "README.md"), "local\n")
	_, repos, raw = sync()
	if repos[0].Commit != head() || !repos[0].Dirty || !strings.Contains(repos[0].Sync, "fast-forwarded") {
		t.Fatalf("after the fast-forward: %+v\n%s", repos[0], raw)
	}

	// Without the gateway's part nothing is written or printed.
	var out bytes.Buffer
	other := t.TempDir()
	cfg.Home = other
	writeProvenance(cfg, "", nil, &out)
	if out.Len() != 0 {
		t.Errorf("printed %q", out.String())
	}
	if _, err := os.Stat(filepath.Join(other, ".hubgate")); err == nil {
		t.Error("wrote a provenance without the gateway's part")
	}
}
