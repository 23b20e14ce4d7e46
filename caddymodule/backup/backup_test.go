package backup

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hubgate/hubgate/policies"
)

// TestOnlyOffboardingDeletesVolumes reads every non-test Go file of the
// repository: the calls that delete a home volume (RemoveVolume, the
// engine's VolumeRemove, a claim's Delete) are only in the backends that
// implement RemoveVolume, the benchmark driver's clean-up of its own
// volumes, and this package's offboarding (which a verified final backup
// precedes). A new caller fails this test.
func TestOnlyOffboardingDeletesVolumes(t *testing.T) {
	root := filepath.Join("..", "..")
	allowed := map[string][]string{
		"RemoveVolume": {"caddymodule/backup/offboard.go"},
		"VolumeRemove": {"spawner/docker/volume.go", "bench/run/docker.go"},
	}
	found := map[string][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".tools" || d.Name() == ".run" || strings.HasPrefix(d.Name(), ".git")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, src, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
				if _, watched := allowed[sel.Sel.Name]; watched {
					found[sel.Sel.Name] = append(found[sel.Sel.Name], filepath.ToSlash(rel))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, files := range found {
		for _, f := range files {
			if !slices.Contains(allowed[name], f) {
				t.Errorf("%s calls %s: only offboarding may delete a home volume", f, name)
			}
		}
	}
	if !slices.Contains(found["RemoveVolume"], "caddymodule/backup/offboard.go") {
		t.Error("offboard.go no longer calls RemoveVolume: update this test")
	}
}

func TestCleanPaths(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
		bad  bool
	}{
		{in: []string{"notes.txt", "/data/x.csv", "a/../b"}, want: []string{"notes.txt", "data/x.csv", "b"}},
		{in: []string{"../../etc/passwd"}, want: []string{"etc/passwd"}},
		{in: []string{"/"}, want: nil},
		{in: []string{"a\x00b"}, bad: true},
	} {
		got, err := cleanPaths(tc.in)
		if (err != nil) != tc.bad || !slices.Equal(got, tc.want) {
			t.Errorf("cleanPaths(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestForecast(t *testing.T) {
	pol, err := policies.Parse("p.yaml", []byte("retention: 1h\nteams:\n  t: {members: [alice], groups: [\"oidc:lab\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	states := map[string]*UserState{
		"bob":   {User: "bob", MissingSince: now.Add(-30 * time.Minute)},
		"carol": {User: "carol", Groups: []string{"oidc:lab"}}, // in through a group
	}
	got := Forecast(pol, []string{"alice", "bob", "carol", "dave"}, states, now)
	want := []Pending{
		{User: "bob", MissingSince: now.Add(-30 * time.Minute), Deadline: now.Add(30 * time.Minute)},
		{User: "dave", MissingSince: now, Deadline: now.Add(time.Hour)},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Forecast = %+v\nwant %+v", got, want)
	}
	forever, _ := policies.Parse("p.yaml", []byte("teams:\n  t: {members: [alice]}\n"))
	for _, p := range Forecast(forever, []string{"bob"}, states, now) {
		if !p.Deadline.IsZero() {
			t.Errorf("without retention %s has a deadline %v", p.User, p.Deadline)
		}
	}
}

func TestQuotaCheck(t *testing.T) {
	u := &Usage{Bytes: 30 << 30}
	q := Check(u, policies.Storage{Soft: 20 << 30, Hard: 25 << 30})
	if !q.OverSoft || !q.OverHard {
		t.Errorf("30GiB against 20/25: %+v", q)
	}
	if q := Check(u, policies.Storage{}); q.OverSoft || q.OverHard {
		t.Errorf("no quota: %+v", q)
	}
	if q := Check(nil, policies.Storage{Hard: 1}); q.Measured || q.OverHard {
		t.Errorf("unmeasured: %+v", q)
	}
}
