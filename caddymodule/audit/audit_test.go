package audit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// testKey is the gateway's ES256 assertion key stand-in.
func testKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// openLog opens a Writer and a zap logger on it, as the gateway would.
func openLog(t *testing.T, opts Options) (*Writer, *zap.Logger) {
	t.Helper()
	w, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, zap.New(NewCore(w, zap.InfoLevel)).Named("hubgate.audit")
}

// logRecords writes n audit records like the gateway's.
func logRecords(l *zap.Logger, from, n int) {
	for i := from; i < from+n; i++ {
		l.Info("login", zap.String("user", fmt.Sprintf("user%d", i)), zap.String("remote_ip", "10.0.0.1"), zap.String("provider", "local"))
	}
}

func readLines(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func writeLines(t *testing.T, file string, lines []string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestUntouchedLogVerifies(t *testing.T) {
	key := testKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, l := openLog(t, Options{Path: path, Signer: key, KeyID: "k1", CheckpointEvery: 10})
	logRecords(l, 0, 25)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(&key.PublicKey, path)
	if err != nil {
		t.Fatal(err)
	}
	// 1 chain start + 25 records + checkpoints after 10 and 20 records and
	// one on Close.
	if got, want := rep.String(), "ok: 29 records, 3 checkpoints"; got != want {
		t.Fatalf("report %q, want %q", got, want)
	}
	lines := readLines(t, path)
	if !strings.Contains(lines[0], `"msg":"audit chain started"`) || !strings.Contains(lines[1], `"user":"user0"`) ||
		!strings.Contains(lines[1], `"seq":2,"prev":"`) {
		t.Fatalf("unexpected records:\n%s\n%s", lines[0], lines[1])
	}
}

func TestVerifyAcrossRotation(t *testing.T) {
	key := testKey(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	clock := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); clock = clock.Add(time.Second); return clock }
	w, l := openLog(t, Options{Path: path, Signer: key, CheckpointEvery: 7, MaxSize: 2048, now: now})
	logRecords(l, 0, 40)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rotated, err := rotatedFiles(path)
	if err != nil || len(rotated) < 3 {
		t.Fatalf("want at least 3 rotated files, got %v, %v", rotated, err)
	}
	files := append(rotated, path)
	rep, err := Verify(&key.PublicKey, files...)
	if err != nil {
		t.Fatalf("untouched rotated log: %v", err)
	}
	if rep.Records != 1+40+6 || rep.Chains != 1 {
		t.Fatalf("report %+v", rep)
	}
	// The first record of each new file names the hash of the previous
	// file's last record.
	for i := 1; i < len(files); i++ {
		prev := readLines(t, files[i-1])
		first := readLines(t, files[i])[0]
		if !strings.Contains(first, `"prev":"`+lineHash([]byte(prev[len(prev)-1]))+`"`) {
			t.Fatalf("%s does not continue %s", files[i], files[i-1])
		}
	}
	// Without the older files the chain's start is missing, and said so.
	_, err = Verify(&key.PublicKey, path)
	var p *Problem
	if !errors.As(err, &p) || p.Kind != KindMissingHead || p.Line != 1 {
		t.Fatalf("current file alone: %v; want %s at line 1", err, KindMissingHead)
	}
	// A rotated file left out in the middle is a removal.
	_, err = Verify(&key.PublicKey, append([]string{rotated[0]}, rotated[2:]...)...)
	if !errors.As(err, &p) || p.Kind != KindRemoved || p.File != rotated[2] || p.Line != 1 {
		t.Fatalf("a rotated file left out: %v; want %s at %s:1", err, KindRemoved, rotated[2])
	}
}

func TestRestartContinuesChain(t *testing.T) {
	key := testKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w1, l1 := openLog(t, Options{Path: path, Signer: key, CheckpointEvery: 100})
	logRecords(l1, 0, 5)
	if err := w1.Close(); err != nil {
		t.Fatal(err)
	}
	// A gateway restart: a new Writer on the same file.
	w2, l2 := openLog(t, Options{Path: path, Signer: key, CheckpointEvery: 100})
	logRecords(l2, 5, 5)
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(&key.PublicKey, path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rep.String(), "ok: 13 records, 2 checkpoints"; got != want {
		t.Fatalf("report %q, want %q", got, want)
	}
	if n := strings.Count(strings.Join(readLines(t, path), "\n"), "audit chain started"); n != 1 {
		t.Fatalf("%d chain starts, want 1 (the restart must continue the chain)", n)
	}

	// A restart after rotation, with the current file gone: the chain
	// continues from the newest rotated file.
	w3, l3 := openLog(t, Options{Path: path, Signer: key, MaxSize: 1})
	logRecords(l3, 10, 2)
	w3.Close()
	rotated, _ := rotatedFiles(path)
	os.Remove(path)
	w4, l4 := openLog(t, Options{Path: path, Signer: key})
	logRecords(l4, 12, 1)
	w4.Close()
	if _, err := Verify(&key.PublicKey, append(rotated, path)...); err != nil {
		t.Fatalf("restart with only rotated files: %v", err)
	}
}

func TestRestartRefusesDamagedTail(t *testing.T) {
	key := testKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte("{\"msg\":\"not chained\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Path: path, Signer: key}); err == nil || !strings.Contains(err.Error(), "not a chained audit record") {
		t.Fatalf("Open on a file ending in an unchained line: %v", err)
	}
}

// TestTamperingIsNamed edits a produced log in each way someone might, and
// checks Verify names the line.
func TestTamperingIsNamed(t *testing.T) {
	key := testKey(t)
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.log")
	w, l := openLog(t, Options{Path: orig, Signer: key, CheckpointEvery: 10})
	logRecords(l, 0, 25)
	w.Close()
	lines := readLines(t, orig)
	// Lines (1-based, line n holds seq n): 1 chain start, 2..10 user0..8,
	// 11 checkpoint, 12..21 user9..18, 22 checkpoint, 23..28 user19..24,
	// 29 checkpoint (on Close).
	if !strings.Contains(lines[10], FieldCheckpoint) || !strings.Contains(lines[21], FieldCheckpoint) {
		t.Fatalf("checkpoints not where expected:\n%s", strings.Join(lines, "\n"))
	}
	rechain := func(ls []string, from int) []string {
		// What a careful forger does: recompute every hash after an edit.
		out := append([]string(nil), ls...)
		for i := from; i < len(out); i++ {
			j := strings.LastIndex(out[i], `"prev":"`)
			out[i] = out[i][:j] + `"prev":"` + lineHash([]byte(out[i-1])) + `"}`
		}
		return out
	}
	cases := []struct {
		name     string
		edit     func([]string) []string
		kind     string
		line     int
		unsigned int
	}{
		{"delete a record", func(ls []string) []string { return append(ls[:5:5], ls[6:]...) }, KindRemoved, 6, 0},
		{"delete two records", func(ls []string) []string { return append(ls[:5:5], ls[7:]...) }, KindRemoved, 6, 0},
		{"edit a record", func(ls []string) []string {
			ls[6] = strings.Replace(ls[6], "user5", "mallory", 1)
			return ls
		}, KindEdited, 7, 0},
		{"edit the level of a record", func(ls []string) []string {
			ls[13] = strings.Replace(ls[13], `"level":"info"`, `"level":"debug"`, 1)
			return ls
		}, KindEdited, 14, 0},
		{"edit a record's prev", func(ls []string) []string {
			ls[8] = strings.Replace(ls[8], `"prev":"`, `"prev":"x`, 1)
			return ls
		}, KindEdited, 9, 0},
		{"swap two records", func(ls []string) []string {
			ls[3], ls[4] = ls[4], ls[3]
			return ls
		}, KindReordered, 4, 0},
		{"move a record later", func(ls []string) []string {
			moved := ls[2]
			ls = append(ls[:2:2], ls[3:]...)
			return append(ls[:8:8], append([]string{moved}, ls[8:]...)...)
		}, KindRemoved, 3, 0},
		{"delete the first line", func(ls []string) []string { return ls[1:] }, KindMissingHead, 1, 0},
		{"insert a line", func(ls []string) []string {
			return append(ls[:4:4], append([]string{`{"level":"info","msg":"login","user":"eve"}`}, ls[4:]...)...)
		}, KindNotARecord, 5, 0},
		{"forge a checkpoint signature", func(ls []string) []string {
			ls[10] = strings.Replace(ls[10], `"sig":"`, `"sig":"AAAA`, 1)
			return ls
		}, KindBadSig, 11, 0},
		{"edit and rechain everything after", func(ls []string) []string {
			ls[15] = strings.Replace(ls[15], "user13", "mallory", 1)
			return rechain(ls, 16)
		}, KindBadSig, 22, 0},
		{"delete and rechain everything after", func(ls []string) []string {
			ls = append(ls[:14:14], ls[15:]...)
			for i := 14; i < len(ls); i++ { // renumber too
				ls[i] = strings.Replace(ls[i], fmt.Sprintf(`"seq":%d,`, i+2), fmt.Sprintf(`"seq":%d,`, i+1), 1)
			}
			return rechain(ls, 14)
		}, KindBadSig, 21, 0},
		// Cutting off the tail back to a checkpoint cannot be told from a
		// log that ends there, but the report says the rest is unsigned.
		{"cut the last checkpoint", func(ls []string) []string { return ls[:len(ls)-1] }, "", 0, 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".log")
			writeLines(t, file, c.edit(append([]string(nil), lines...)))
			rep, err := Verify(&key.PublicKey, file)
			if c.kind == "" {
				if err != nil || rep.Unsigned != c.unsigned || !strings.Contains(rep.String(), "not yet signed") {
					t.Fatalf("got %v, %q; want ok with %d unsigned", err, rep.String(), c.unsigned)
				}
				return
			}
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("Verify: %v; want a Problem", err)
			}
			if p.Kind != c.kind || p.File != file || p.Line != c.line {
				t.Fatalf("got %s\nwant %s at line %d", p, c.kind, c.line)
			}
			t.Logf("%s", p)
		})
	}
}

func TestWrongKeyFails(t *testing.T) {
	key := testKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, l := openLog(t, Options{Path: path, Signer: key, CheckpointEvery: 3})
	logRecords(l, 0, 4)
	w.Close()
	_, err := Verify(&testKey(t).PublicKey, path)
	var p *Problem
	if !errors.As(err, &p) || p.Kind != KindBadSig || p.Line != 4 {
		t.Fatalf("another key: %v; want %s at line 4", err, KindBadSig)
	}
}

// TestReplicasAndConcurrency: two writers (replicas) with their own files,
// many goroutines logging at once; both files verify, as two chains.
func TestReplicasAndConcurrency(t *testing.T) {
	key := testKey(t)
	dir := t.TempDir()
	var files []string
	var wg sync.WaitGroup
	var writers []*Writer
	for r := range 2 {
		file := filepath.Join(dir, fmt.Sprintf("audit-replica%d.log", r))
		files = append(files, file)
		w, l := openLog(t, Options{Path: file, Signer: key, CheckpointEvery: 17})
		writers = append(writers, w)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				logRecords(l, g*100, 50)
			}()
		}
	}
	wg.Wait()
	for _, w := range writers {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := Verify(&key.PublicKey, files...)
	if err != nil {
		t.Fatal(err)
	}
	// Per replica: 1 start + 400 records + 23 checkpoints (every 17 of
	// 401 records, then one on Close).
	if rep.Chains != 2 || rep.Records != 2*(1+400+24) || rep.Unsigned != 0 {
		t.Fatalf("report %+v (%s)", rep, rep)
	}
}

func TestIntervalCheckpoint(t *testing.T) {
	key := testKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	_, l := openLog(t, Options{Path: path, Signer: key, CheckpointEvery: 1000, CheckpointInterval: 100 * time.Millisecond})
	logRecords(l, 0, 1)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(strings.Join(readLines(t, path), "\n"), FieldCheckpoint) {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint 5s after a record with a 100ms interval")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rep, err := Verify(&key.PublicKey, path)
	if err != nil || rep.Checkpoints != 1 || rep.Unsigned != 0 {
		t.Fatalf("%v, %s", err, rep)
	}
}

// TestTee: the gateway's audit logger, teed, still writes to its own core
// and also, chained, to the audit file, with the logger's name.
func TestTee(t *testing.T) {
	key := testKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(Options{Path: path, Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	var caddyLog strings.Builder
	core := zap.New(zapcoreFor(&caddyLog)).Named("hubgate.audit")
	l := Tee(core, w)
	l.Info("spawn", zap.String("user", "alice"), zap.String("server", "notebook"))
	w.Close()
	if !strings.Contains(caddyLog.String(), `"msg":"spawn"`) {
		t.Fatalf("the original core lost the record: %q", caddyLog.String())
	}
	lines := readLines(t, path)
	if len(lines) != 3 || !strings.Contains(lines[1], `"logger":"hubgate.audit","msg":"spawn","user":"alice","server":"notebook","seq":2`) {
		t.Fatalf("audit file:\n%s", strings.Join(lines, "\n"))
	}
	if _, err := Verify(&key.PublicKey, path); err != nil {
		t.Fatal(err)
	}
}

// zapcoreFor is a JSON core writing to b, standing in for Caddy's.
func zapcoreFor(b *strings.Builder) zapcore.Core {
	return zapcore.NewCore(zapcore.NewJSONEncoder(EncoderConfig()), zapcore.AddSync(b), zap.InfoLevel)
}
