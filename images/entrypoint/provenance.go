package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hubgate/hubgate/spawner/contract"
)

// repoState reads where a repo is after the sync: its HEAD commit, branch
// and whether the work tree has uncommitted changes. A directory that is
// not a repo gives an empty state.
func repoState(ctx context.Context, g *gitRunner, dir string) contract.ProvenanceRepo {
	var st contract.ProvenanceRepo
	if _, err := os.Lstat(filepath.Join(dir, ".git")); err != nil {
		return st
	}
	// The sync's budget may be spent; these calls are quick and bounded
	// by the per-command timeout.
	ctx = context.WithoutCancel(ctx)
	if head, err := g.run(ctx, dir, "rev-parse", "--verify", "--quiet", "HEAD"); err == nil {
		st.Commit = head
	}
	st.Branch, _ = g.run(ctx, dir, "symbolic-ref", "--quiet", "--short", "HEAD")
	if out, err := g.run(ctx, dir, "status", "--porcelain", "--untracked-files=no"); err == nil && out != "" {
		st.Dirty = true
	}
	return st
}

// writeProvenance writes ~/.hubgate/provenance.json: the gateway's part
// (HUBGATE_PROVENANCE, a JSON object) with the repos as the sync left
// them, and prints the repos on one marker line for the gateway's audit
// log. Without HUBGATE_PROVENANCE (an older gateway) it does nothing.
// Problems are logged on stderr; they never stop the app.
func writeProvenance(cfg config, gateway string, repos []contract.ProvenanceRepo, stdout io.Writer) {
	if gateway == "" {
		return
	}
	if repos == nil {
		repos = []contract.ProvenanceRepo{}
	}
	doc := map[string]any{}
	if err := json.Unmarshal([]byte(gateway), &doc); err != nil {
		doc = map[string]any{"gateway_part_unreadable": err.Error()}
	}
	doc["repos"] = repos
	doc["repos_reported_by"] = "hubgate-entrypoint"
	doc["written"] = time.Now().UTC().Format(time.RFC3339)
	body, _ := json.MarshalIndent(doc, "", "  ")
	line, _ := json.Marshal(contract.ProvenanceReport{Repos: repos})
	fmt.Fprintf(stdout, "%s%s\n", contract.ProvenanceMarker, line)

	path := filepath.Join(cfg.Home, filepath.FromSlash(contract.ProvenanceFile))
	if err := writeFileAtomic(path, append(body, '\n')); err != nil {
		msg := err.Error()
		if cfg.TokenValue != "" {
			msg = strings.ReplaceAll(msg, cfg.TokenValue, "[token]")
		}
		fmt.Fprintf(cfg.Stderr, "hubgate-entrypoint: -: provenance not written: %s\n", msg)
	}
}

// writeFileAtomic writes path through a temporary file and a rename, so a
// reader never sees half a file.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".provenance-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
