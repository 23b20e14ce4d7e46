package policies

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mergeBomb is a policy whose team t<depth> stands for 10^depth copies of
// team t0 through merge keys; depth 6 is 425 bytes.
func mergeBomb(depth int) string {
	var b strings.Builder
	b.WriteString("images:\n  nb: {image: img}\nteams:\n  t0: &t0 {images: [nb], members: [alice]}\n")
	for i := 1; i <= depth; i++ {
		fmt.Fprintf(&b, "  t%d: &t%d {<<: [%s]}\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*t%d,", i-1), 10), ","))
	}
	return b.String()
}

// wantProblem checks that err is an Errors holding a problem at file:line
// whose message contains msg.
func wantProblem(t *testing.T, err error, file string, line int, msg string) {
	t.Helper()
	var probs Errors
	if !errors.As(err, &probs) {
		t.Fatalf("error %v (%T); want policy problems", err, err)
	}
	for _, p := range probs {
		if p.File == file && p.Line == line && strings.Contains(p.Message, msg) {
			return
		}
	}
	t.Fatalf("problems:\n%v\nwant one at %s:%d containing %q", err, file, line, msg)
}

// TestBudgetMergeBomb: the outside review's merge-key bomb is refused in
// well under 100 ms with a file:line problem. Before the budget, depth 6
// took 1.6 s and each further level ten times more.
func TestBudgetMergeBomb(t *testing.T) {
	for _, depth := range []int{6, 9} {
		data := mergeBomb(depth)
		start := time.Now()
		_, err := Parse("bomb.yaml", []byte(data))
		took := time.Since(start)
		t.Logf("depth %d (%d bytes): %v", depth, len(data), took)
		if took > 100*time.Millisecond {
			t.Errorf("depth %d took %v; want < 100ms", depth, took)
		}
		// Line 9 is t5, the first team that alone stands for more than
		// MaxNodes nodes (t4 stands for about 73,000).
		wantProblem(t, err, "bomb.yaml", 9, "expands to more than 100000 YAML nodes")
	}
	// A modest use of merge keys stays well within the budget.
	if _, err := Parse("ok.yaml", []byte(mergeBomb(3))); err != nil {
		t.Fatalf("1000 merged copies: %v", err)
	}
}

func TestBudgetDepth(t *testing.T) {
	deep := "admins: " + strings.Repeat("[", MaxDepth) + "x" + strings.Repeat("]", MaxDepth) + "\n"
	_, err := Parse("deep.yaml", []byte(deep))
	wantProblem(t, err, "deep.yaml", 1, "nests more than 64 levels deep")

	// Aliases count as what they stand for: each level doubles nothing
	// but adds depth.
	var b strings.Builder
	b.WriteString("x0: &x0 [a]\n")
	for i := 1; i <= 70; i++ {
		fmt.Fprintf(&b, "x%d: &x%d [*x%d]\n", i, i, i-1)
	}
	_, err = Parse("chain.yaml", []byte(b.String()))
	wantProblem(t, err, "chain.yaml", 64, "nests more than 64 levels deep")
}

func TestBudgetAliases(t *testing.T) {
	data := "admins: &a [x]\nteams: [" + strings.TrimSuffix(strings.Repeat("*a, ", MaxAliases+1), ", ") + "]\n"
	_, err := Parse("aliases.yaml", []byte(data))
	wantProblem(t, err, "aliases.yaml", 1, "too many aliases")
}

func TestBudgetFileSize(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "big.yaml")
	data := teamPolicy("alice") + "# " + strings.Repeat("x", MaxFileBytes) + "\n"
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(file)
	wantProblem(t, err, file, 0, "larger than 1048576 bytes")
	_, err = Parse("big.yaml", []byte(data))
	wantProblem(t, err, "big.yaml", 0, "larger than 1048576 bytes")
}

// TestWatcherBombKeepsPolicy: a hot reload of a bomb (depth 9, which would
// take the old walk over half an hour) is refused at once, keeps the last
// good policy, and Close returns promptly afterwards.
func TestWatcherBombKeepsPolicy(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(file, []byte(teamPolicy("alice")), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	w := startWatcher(t, []string{file}, nil, rec.record)
	old := w.Current()

	renameOver(t, file, mergeBomb(9))
	eventually(t, 2*time.Second, "the reload of the bomb", func() bool { return rec.count() >= 1 })
	res := w.LastResult()
	if res.OK || res.Err == nil || !strings.Contains(res.Err.Error(), "expands to more than") {
		t.Fatalf("reload of the bomb: %+v; want it refused by the budget", res)
	}
	if w.Current() != old {
		t.Fatal("the bomb replaced the last good policy")
	}
	done := make(chan struct{})
	go func() { w.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close hangs after a bomb reload")
	}
}
