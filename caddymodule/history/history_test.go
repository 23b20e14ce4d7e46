package history

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logger writes audit records into idx the way the gateway does.
func logger(idx *Index) *zap.Logger {
	cfg := zap.NewProductionEncoderConfig()
	cfg.EncodeTime = zapcore.EpochTimeEncoder
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(cfg), idx, zapcore.InfoLevel))
}

func msgs(recs []Record) string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Msg)
	}
	return strings.Join(out, ",")
}

func TestEachUserSeesOnlyTheirOwn(t *testing.T) {
	idx := New(Options{})
	lg := logger(idx)
	lg.Info("login", zap.String("user", "alice"), zap.String("provider", "local"))
	lg.Warn("login failed", zap.String("user", "bob"), zap.String("reason", "bad_credentials"))
	lg.Info("spawn", zap.String("user", "alice"), zap.String("server", "notebook"))
	lg.Info("stop", zap.String("user", "alice"), zap.String("server", "notebook"), zap.String("by", "admin"))
	// A record of a new kind about two people (a share, say), and one
	// naming an owner: both appear without a change to the index.
	lg.Info("server shared", zap.String("owner", "alice"), zap.Strings("subjects", []string{"alice", "carol"}), zap.String("server", "notebook"))
	lg.Info("policy reload", zap.Strings("files", []string{"/etc/p.yaml"}), zap.Strings("access_changes", []string{"bob: - access", "carol: + images notebook"}))
	lg.Info("audit checkpoint") // names nobody

	recs, more := idx.Page("alice", 0, 10)
	if got := msgs(recs); got != "server shared,stop,spawn,login" || more {
		t.Fatalf("alice's history %q (more %v)", got, more)
	}
	if recs[1].Fields["by"] != "admin" || recs[1].Fields["server"] != "notebook" || recs[1].Level != "info" {
		t.Errorf("stop record %+v", recs[1])
	}
	if recs[3].Time.IsZero() || time.Since(recs[3].Time) > time.Minute {
		t.Errorf("login time %v", recs[3].Time)
	}
	bob, _ := idx.Page("bob", 0, 10)
	if got := msgs(bob); got != "policy reload,login failed" {
		t.Fatalf("bob's history %q", got)
	}
	// bob sees his own line of the reload, not carol's, nor the files.
	if ch := fmt.Sprint(bob[0].Fields["access_changes"]); ch != "[bob: - access]" || bob[0].Fields["files"] != nil {
		t.Errorf("bob's reload record %v", bob[0].Fields)
	}
	carol, _ := idx.Page("carol", 0, 10)
	if got := msgs(carol); got != "policy reload,server shared" {
		t.Fatalf("carol's history %q", got)
	}
	if none, _ := idx.Page("mallory", 0, 10); len(none) != 0 {
		t.Fatalf("mallory sees %v", none)
	}
}

func TestPagesAndBounds(t *testing.T) {
	idx := New(Options{PerUser: 30})
	lg := logger(idx)
	for i := range 100 {
		lg.Info("login", zap.String("user", "alice"), zap.Int("n", i))
	}
	var got []string
	before := uint64(0)
	for pages := 0; ; pages++ {
		recs, more := idx.Page("alice", before, 7)
		for _, r := range recs {
			got = append(got, fmt.Sprint(r.Fields["n"]))
		}
		if !more {
			break
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		before = recs[len(recs)-1].ID
	}
	// The newest 30, newest first, each once.
	if len(got) != 30 || got[0] != "99" || got[29] != "70" {
		t.Fatalf("pages gave %d records: %v", len(got), got)
	}

	// The byte budget: the least recently active user goes first.
	small := New(Options{MaxBytes: 4000})
	lg = logger(small)
	lg.Info("login", zap.String("user", "old"))
	for i := range 60 {
		lg.Info("login", zap.String("user", "new"), zap.Int("n", i))
	}
	if recs, _ := small.Page("old", 0, 10); len(recs) != 0 {
		t.Errorf("the least recently active user kept %d records over budget", len(recs))
	}
	recs, _ := small.Page("new", 0, 100)
	if len(recs) == 0 || len(recs) == 60 || fmt.Sprint(recs[0].Fields["n"]) != "59" {
		t.Errorf("over budget: %d records of new, newest %v", len(recs), recs[0].Fields["n"])
	}

	// A huge field (a container's output) is cut.
	lg = logger(idx)
	lg.Error("spawn failed", zap.String("user", "alice"), zap.String("container_output", strings.Repeat("x", 1<<20)))
	recs, _ = idx.Page("alice", 0, 1)
	if s := recs[0].Fields["container_output"].(string); len(s) > 2*maxString {
		t.Errorf("a %d-byte field kept", len(s))
	}
	// Garbage is ignored.
	idx.Write([]byte("not json\n{\"user\": 3}\n{broken\n"))
	if recs, _ := idx.Page("alice", 0, 1); recs[0].Msg != "spawn failed" {
		t.Errorf("garbage indexed: %+v", recs[0])
	}
}

// TestSeedFromFiles: a restarted gateway reads the history back from the
// end of the audit files, rotated ones included, in order.
func TestSeedFromFiles(t *testing.T) {
	dir := t.TempDir()
	old, cur := filepath.Join(dir, "audit-20261201T000000.000Z.log"), filepath.Join(dir, "audit.log")
	line := func(i int) string {
		return fmt.Sprintf(`{"level":"info","ts":%d.5,"logger":"hubgate.audit","msg":"login","user":"alice","n":%d,"seq":%d,"prev":"x"}`+"\n", 1764547200+i, i, i)
	}
	var a, b strings.Builder
	for i := range 10 {
		a.WriteString(line(i))
	}
	for i := 10; i < 20; i++ {
		b.WriteString(line(i))
	}
	os.WriteFile(old, []byte(a.String()), 0o600)
	os.WriteFile(cur, []byte(b.String()), 0o600)

	idx := New(Options{})
	// A record written live before the read-back finishes stays newest.
	logger(idx).Info("logout", zap.String("user", "alice"))
	if _, err := idx.Seed(1<<20, old, cur, filepath.Join(dir, "missing.log")); err != nil {
		t.Fatal(err)
	}
	recs, _ := idx.Page("alice", 0, 100)
	if len(recs) != 21 || recs[0].Msg != "logout" || fmt.Sprint(recs[1].Fields["n"]) != "19" || fmt.Sprint(recs[20].Fields["n"]) != "0" {
		t.Fatalf("seeded %d records, newest %s n=%v", len(recs), recs[0].Msg, recs[1].Fields["n"])
	}
	if recs[1].Fields["seq"] != nil || recs[1].Time.Unix() != 1764547200+19 {
		t.Errorf("seeded record %+v", recs[1])
	}
	// Paging goes from the live records into the seeded ones.
	page, more := idx.Page("alice", 0, 3)
	next, _ := idx.Page("alice", page[2].ID, 3)
	if !more || fmt.Sprint(next[0].Fields["n"]) != "17" {
		t.Errorf("second page starts at %v", next[0].Fields["n"])
	}
	// A budget smaller than the files reads only the newest records.
	idx = New(Options{})
	n, err := idx.Seed(int64(len(line(0))*5+10), old, cur)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ = idx.Page("alice", 0, 100)
	if len(recs) != 5 || fmt.Sprint(recs[0].Fields["n"]) != "19" || n > int64(len(line(0))*5+10) {
		t.Fatalf("a small budget read %d bytes, %d records", n, len(recs))
	}
}

// BenchmarkSeed reads back 64 MiB of audit log (about 250,000 records of
// 1,000 users), what a gateway does at start-up.
func BenchmarkSeed(b *testing.B) {
	f := filepath.Join(b.TempDir(), "audit.log")
	var sb strings.Builder
	for i := 0; sb.Len() < DefaultMaxBytes; i++ {
		fmt.Fprintf(&sb, `{"level":"info","ts":%d.25,"logger":"hubgate.audit","msg":"login","user":"user%d","remote_ip":"192.0.2.%d","provider":"local","seq":%d,"prev":"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq"}`+"\n", 1764547200+i, i%1000, i%250, i+1)
	}
	if err := os.WriteFile(f, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()))
	b.ResetTimer()
	for range b.N {
		idx := New(Options{})
		if _, err := idx.Seed(DefaultMaxBytes, f); err != nil {
			b.Fatal(err)
		}
	}
}
