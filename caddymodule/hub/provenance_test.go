package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner/contract"
	"github.com/hubgate/hubgate/spawner/spawnertest"
)

const commitA = "0123456789abcdef0123456789abcdef01234567"

func TestParseProvenanceLine(t *testing.T) {
	granted := []string{"team/analysis", "team/data"}
	logs := "jupyter starting\n" +
		contract.ProvenanceMarker + `{"repos":[{"repo":"team/analysis","commit":"ffff"}]}` + "\n" +
		"hubgate-entrypoint: team/analysis: up to date\n" +
		"2026-12-02T00:00:00Z " + contract.ProvenanceMarker + `{"repos":[` +
		`{"repo":"team/analysis","commit":"` + commitA + `","branch":"main\u001b[31m","dirty":true,"sync":"up to date"},` +
		`{"repo":"team/analysis","commit":"` + commitA + `"},` +
		`{"repo":"evil/other","commit":"` + commitA + `"},` +
		`{"repo":"team/data","commit":"not a hash; rm -rf","sync":"` + strings.Repeat("x", 1000) + `"}]}` + "\n" +
		"[I 00:00 NotebookApp] Serving\n"
	repos, ok := parseProvenanceLine(logs, granted)
	if !ok || len(repos) != 2 {
		t.Fatalf("got %v %+v", ok, repos)
	}
	if r := repos[0]; r.Repo != "team/analysis" || r.Commit != commitA || r.Branch != "main[31m" || !r.Dirty || r.Sync != "up to date" {
		t.Errorf("first repo %+v", r)
	}
	if r := repos[1]; r.Repo != "team/data" || r.Commit != "" || len(r.Sync) != 300 {
		t.Errorf("second repo %+v", r)
	}
	if _, ok := parseProvenanceLine("no marker here\n", granted); ok {
		t.Error("found a report in a log without one")
	}
	if _, ok := parseProvenanceLine(contract.ProvenanceMarker+"{broken\n", granted); ok {
		t.Error("a broken line counted as a report")
	}
}

// TestStartProvenance: a start hands the container the gateway's part of
// the provenance and writes the audit record with the policy's hash and
// the limits; an image that does not report its repos says so.
func TestStartProvenance(t *testing.T) {
	sp := spawnertest.New()
	t.Cleanup(func() { _ = sp.Close() })
	codec, err := session.NewCodec(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	rt, err := New(Options{Spawner: sp, Tokens: codec, Audit: zap.New(core)}, Config{StartTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Destruct() })
	grant := policies.Grant{User: "alice", Teams: []string{"research"}, Repos: []string{"team/analysis"}, PolicyHash: "sha256:feed",
		Limits: policies.Limits{Memory: 1 << 30, CPUs: 2, Pids: 512}, IdleTimeout: time.Hour}
	req := StartRequest{User: "alice", Server: "notebook", Image: &policies.Image{Key: "notebook", Image: "hubgate/testapp:latest", Port: 8888, Home: "/home/hubgate"},
		Grant: grant, Prefix: "/user/alice/notebook/"}
	if _, _, err := rt.StartAndWait(context.Background(), req, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var p Provenance
	if err := json.Unmarshal([]byte(sp.Specs[0].Env[contract.Provenance]), &p); err != nil {
		t.Fatalf("container's %s: %v", contract.Provenance, err)
	}
	if p.User != "alice" || p.PolicyHash != "sha256:feed" || p.Image != "hubgate/testapp:latest" || p.Limits.MemoryBytes != 1<<30 ||
		p.Limits.CPUs != 2 || p.Limits.Pids != 512 || p.Limits.IdleTimeoutS != 3600 || len(p.Repos) != 1 || p.Started.IsZero() {
		t.Errorf("container's provenance %+v", p)
	}
	recs := logs.FilterMessage("provenance").All()
	if len(recs) != 1 {
		t.Fatalf("%d provenance records", len(recs))
	}
	f := recs[0].ContextMap()
	if f["user"] != "alice" || f["policy_hash"] != "sha256:feed" || f["memory_bytes"] != int64(1<<30) || f["pids"] != int64(512) ||
		!strings.HasPrefix(f["repos_reported"].(string), "no report") {
		t.Errorf("provenance record %v", f)
	}
}
