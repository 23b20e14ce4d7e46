package policies

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// renameOver replaces file the way most editors save: write a temporary
// file next to it, then rename it over the original.
func renameOver(t *testing.T, file, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(file), "."+filepath.Base(file)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

func teamPolicy(members ...string) string {
	return "admins: [monika]\nimages:\n  notebook: {image: hubgate/testapp:latest}\nteams:\n  research:\n    members: [" +
		strings.Join(members, ", ") + "]\n    images: [notebook]\n"
}

// recorder collects the results passed to onReload.
type recorder struct {
	mu      sync.Mutex
	results []ReloadResult
}

func (r *recorder) record(res ReloadResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, res)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.results)
}

func startWatcher(t *testing.T, paths []string, logger *zap.Logger, onReload func(ReloadResult)) *Watcher {
	t.Helper()
	w, err := NewWatcher(logger, paths, onReload)
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		w.Close()
	})
	if err := w.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return w
}

func TestWatcherReloads(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	writeFiles(t, dir, map[string]string{"policy.yaml": teamPolicy("alice", "bob")})
	core, logs := observer.New(zapcore.InfoLevel)
	rec := &recorder{}
	w := startWatcher(t, []string{file}, zap.New(core), rec.record)

	// Readers on the hot path while the policy changes under them.
	var stop atomic.Bool
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for !stop.Load() {
				_ = w.Current().Allowed("alice", nil, "notebook")
				_ = w.Current().Grant("bob", []string{"oidc:x"})
			}
		}()
	}
	defer func() { stop.Store(true); readers.Wait() }()

	if !w.Current().Allowed("bob", nil, "notebook") || w.Current().Allowed("carol", nil, "notebook") {
		t.Fatalf("initial policy wrong: %s", w.Current().Summary())
	}

	// (1) A save by rename is seen.
	renameOver(t, file, teamPolicy("alice", "bob", "carol"))
	eventually(t, 2*time.Second, "carol to be allowed", func() bool { return w.Current().Allowed("carol", nil, "notebook") })
	good := w.Current()
	if res := w.LastResult(); !res.OK || res.Err != nil || res.Summary != good.Summary() || len(res.Files) != 1 {
		t.Errorf("LastResult() = %+v", res)
	}

	// (2) A malformed edit keeps the previous policy.
	before := time.Now()
	renameOver(t, file, "admins: [monika]\nteams:\n  research:\n    members: [alice, bob\n")
	eventually(t, 2*time.Second, "the failed reload", func() bool { return w.LastResult().Time.After(before) })
	res := w.LastResult()
	if res.OK || res.Err == nil || !strings.Contains(res.Err.Error(), file+":4: invalid YAML") {
		t.Errorf("LastResult() after a bad edit = %+v", res)
	}
	var errs Errors
	if !errors.As(res.Err, &errs) || len(errs) != 1 || errs[0].Line != 4 {
		t.Errorf("LastResult().Err = %#v, want Errors with line 4", res.Err)
	}
	if w.Current() != good || !w.Current().Allowed("carol", nil, "notebook") {
		t.Errorf("bad edit replaced the policy: %s", w.Current().Summary())
	}

	// (3) A good edit recovers.
	renameOver(t, file, teamPolicy("alice", "bob", "carol", "dave"))
	eventually(t, 2*time.Second, "recovery", func() bool { return w.LastResult().OK && w.Current().Allowed("dave", nil, "notebook") })

	// (4) Removing a member denies them.
	renameOver(t, file, teamPolicy("alice", "carol", "dave"))
	eventually(t, 2*time.Second, "bob to be denied", func() bool { return !w.Current().Allowed("bob", nil, "notebook") })
	if !w.Current().Allowed("alice", nil, "notebook") {
		t.Errorf("alice denied too")
	}

	// Every reload was reported, and logged at the right level.
	if n := rec.count(); n < 4 {
		t.Errorf("onReload called %d times, want at least 4", n)
	}
	failed := logs.FilterLevelExact(zapcore.ErrorLevel).All()
	if len(failed) != 1 {
		t.Fatalf("%d error logs, want 1: %v", len(failed), failed)
	}
	fields := failed[0].ContextMap()
	if !strings.Contains(fields["error"].(string), ":4: invalid YAML") || fields["files"] == nil {
		t.Errorf("error log fields = %v", fields)
	}
	for _, e := range logs.FilterLevelExact(zapcore.InfoLevel).All() {
		if m := e.ContextMap(); m["summary"] == nil || m["files"] == nil {
			t.Errorf("info log %q lacks files or summary: %v", e.Message, m)
		}
	}
}

func TestWatcherFolder(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"00-images.yaml": "images:\n  notebook: {image: x}\n"})
	w := startWatcher(t, []string{dir}, nil, nil)

	writeFiles(t, dir, map[string]string{"research.yaml": "teams:\n  research: {members: [alice], images: [notebook]}\n"})
	eventually(t, 2*time.Second, "a new file to be loaded", func() bool { return w.Current().Allowed("alice", nil, "notebook") })

	renameOver(t, filepath.Join(dir, "other.yaml"), "teams:\n  research: {members: [bob]}\n")
	eventually(t, 2*time.Second, "the duplicate team to be refused", func() bool { return !w.LastResult().OK })
	if err := w.LastResult().Err.Error(); !strings.Contains(err, "teams.research: defined twice") {
		t.Errorf("error = %s", err)
	}
	if !w.Current().Allowed("alice", nil, "notebook") {
		t.Errorf("failed reload replaced the policy")
	}

	if err := os.Remove(filepath.Join(dir, "other.yaml")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "recovery after removing the file", func() bool { return w.LastResult().OK })
}

func TestWatcherSymlinkSwap(t *testing.T) {
	// Kubernetes updates a mounted config map by pointing ..data at a new
	// folder; the file path itself never changes.
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"..v1/policy.yaml": teamPolicy("alice")})
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatalf("symlink: %v", err)
	}
	file := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), file); err != nil {
		t.Fatal(err)
	}
	w := startWatcher(t, []string{file}, nil, nil)

	writeFiles(t, dir, map[string]string{"..v2/policy.yaml": teamPolicy("bob")})
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the swapped policy", func() bool {
		p := w.Current()
		return p.Allowed("bob", nil, "notebook") && !p.Allowed("alice", nil, "notebook")
	})
}

func TestWatcherIgnoresUnchangedFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	writeFiles(t, dir, map[string]string{"policy.yaml": teamPolicy("alice")})
	rec := &recorder{}
	w := startWatcher(t, []string{file}, nil, rec.record)

	// Unrelated files in the same folder, and a save that changes nothing,
	// cause no reload.
	writeFiles(t, dir, map[string]string{"unrelated.txt": "x"})
	renameOver(t, file, teamPolicy("alice"))
	// Then a real change, to know the watcher has processed the above.
	renameOver(t, file, teamPolicy("alice", "bob"))
	eventually(t, 2*time.Second, "bob to be allowed", func() bool { return w.Current().Allowed("bob", nil, "notebook") })
	if n := rec.count(); n != 1 {
		t.Errorf("onReload called %d times, want 1", n)
	}
}

func TestWatcherReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	writeFiles(t, dir, map[string]string{"policy.yaml": teamPolicy("alice")})
	rec := &recorder{}
	w, err := NewWatcher(nil, []string{file}, rec.record)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if res := w.LastResult(); !res.OK || res.Summary == "" || rec.count() != 0 {
		t.Errorf("initial LastResult() = %+v, onReload calls %d", res, rec.count())
	}
	first := w.Current()

	res := w.Reload() // forced, even though nothing changed
	if !res.OK || rec.count() != 1 || w.Current() == first {
		t.Errorf("Reload() = %+v; onReload calls %d", res, rec.count())
	}

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	res = w.Reload()
	if res.OK || res.Err == nil || !strings.Contains(res.Err.Error(), "no such file") || w.Current() == nil {
		t.Errorf("Reload() of a missing file = %+v", res)
	}
}

func TestNewWatcherRefusesBadPolicy(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	writeFiles(t, dir, map[string]string{"policy.yaml": "teams:\n  research:\n    images: [nope]\n"})
	w, err := NewWatcher(nil, []string{file}, nil)
	var errs Errors
	if w != nil || !errors.As(err, &errs) || len(errs) != 1 || errs[0].Line != 3 {
		t.Fatalf("NewWatcher() = %v, %v; want Errors at line 3", w, err)
	}
}

func TestWatcherStartStop(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	writeFiles(t, dir, map[string]string{"policy.yaml": teamPolicy("alice")})
	w, err := NewWatcher(nil, []string{file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	cancel()
	done := make(chan struct{})
	go func() {
		w.Close()
		w.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := w.Start(context.Background()); err == nil {
		t.Error("Start after Close succeeded")
	}
	if !w.Current().Allowed("alice", nil, "notebook") {
		t.Error("policy gone after Close")
	}
}
