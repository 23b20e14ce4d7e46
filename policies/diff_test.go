package policies

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateDiff = flag.Bool("update-diff", false, "rewrite testdata/diff/*/want.txt")

// side returns the old or new policy of a diff case: a file NAME.yaml or a
// folder NAME.
func side(t *testing.T, dir, name string) string {
	t.Helper()
	for _, p := range []string{filepath.Join(dir, name+".yaml"), filepath.Join(dir, name)} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("%s: no %s.yaml or %s/", dir, name, name)
	return ""
}

// TestDiffGolden runs `check-policy --diff OLD NEW` on each case under
// testdata/diff/ and compares the exit code and output with want.txt
// ("exit N" on the first line, then the output).
func TestDiffGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/diff/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no diff cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var out bytes.Buffer
			code := RunDiff([]string{side(t, dir, "old"), side(t, dir, "new")}, &out)
			got := fmt.Sprintf("exit %d\n%s", code, out.String())
			want := filepath.Join(dir, "want.txt")
			if *updateDiff {
				if err := os.WriteFile(want, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			w, err := os.ReadFile(want)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(w) {
				t.Errorf("check-policy --diff %s differs\n--- got\n%s--- want\n%s", dir, got, w)
			}
		})
	}
}

// TestDiffJSON checks the JSON form carries the same changes.
func TestDiffJSON(t *testing.T) {
	var out bytes.Buffer
	if code := RunDiff([]string{"--json", "testdata/diff/members/old.yaml", "testdata/diff/members/new.yaml"}, &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	var d PolicyDiff
	if err := json.Unmarshal(out.Bytes(), &d); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	var alice *UserDiff
	for i := range d.Users {
		if d.Users[i].User == "alice" {
			alice = &d.Users[i]
		}
	}
	if alice == nil {
		t.Fatalf("no alice in %s", out.String())
	}
	want := Change{What: "limits.memory", Op: "~", From: "4GiB", To: "8GiB"}
	found := false
	for _, c := range alice.Changes {
		found = found || c == want
	}
	if !found {
		t.Fatalf("alice's changes %+v lack %+v", alice.Changes, want)
	}
	// The text form is the JSON's changes rendered.
	text := Diff(mustLoad(t, "testdata/diff/members/old.yaml"), mustLoad(t, "testdata/diff/members/new.yaml")).Lines()
	if !strings.HasPrefix(text[0], "alice: ") || !strings.Contains(text[0], "limits memory 4GiB -> 8GiB") {
		t.Fatalf("text form: %q", text)
	}
}

func mustLoad(t *testing.T, path string) *Policy {
	t.Helper()
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDiffNilAndUsage(t *testing.T) {
	p := mustLoad(t, "testdata/diff/tokens-and-admins/new.yaml")
	if !Diff(p, p).Empty() || Diff(p, p).Text() != "no access changes\n" {
		t.Fatal("a policy differs from itself")
	}
	gone := Diff(p, nil)
	if len(gone.Users) != 2 || gone.Users[0].Changes[0] != (Change{What: "access", Op: "-"}) {
		t.Fatalf("removing the policy: %+v", gone.Users)
	}
	for _, args := range [][]string{nil, {"a.yaml"}, {"a", "b", "c"}, {"--bogus", "a", "b"}} {
		var out bytes.Buffer
		if code := RunDiff(args, &out); code != 2 {
			t.Errorf("RunDiff(%q) = %d; want 2 (usage)", args, code)
		}
	}
	var out bytes.Buffer
	if code := RunDiff([]string{"testdata/diff/members/old.yaml", "testdata/diff/missing.yaml"}, &out); code != 1 {
		t.Errorf("a missing new policy: exit %d, want 1: %s", code, out.String())
	}
}
