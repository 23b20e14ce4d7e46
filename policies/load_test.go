package policies

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeFiles creates files (name -> content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadFolder(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"00-base.yaml":    "admins: [Monika]\nimages:\n  notebook: {image: hubgate/jupyterlab:latest}\n",
		"10-research.yml": "admins: [alice]\nteams:\n  research:\n    members: [alice]\n    images: [notebook, rstudio]\n",
		"20-rstudio.YAML": "images:\n  rstudio: {image: hubgate/rstudio:latest}\n",
		// Ignored: dotfiles, editor leftovers, other extensions, sub-folders.
		".hidden.yaml":        "teams: {hidden: {}}\n",
		".#10-research.yml":   "not: [valid",
		"10-research.yml~":    "not: [valid",
		"#10-research.yml#":   "not: [valid",
		"notes.txt":           "not: [valid",
		"10-research.yml.swp": "not: [valid",
		"sub/teams.yaml":      "teams: {sub: {}}\n",
		"dir.yaml/x.yaml":     "teams: {dir: {}}\n",
	})
	p, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	wantFiles := []string{filepath.Join(dir, "00-base.yaml"), filepath.Join(dir, "10-research.yml"), filepath.Join(dir, "20-rstudio.YAML")}
	if !reflect.DeepEqual(p.Files, wantFiles) {
		t.Errorf("Files = %q, want %q", p.Files, wantFiles)
	}
	if want := []string{"alice", "monika"}; !reflect.DeepEqual(p.Admins, want) {
		t.Errorf("Admins = %q, want %q", p.Admins, want)
	}
	if len(p.Teams) != 1 || len(p.Images) != 2 {
		t.Errorf("Teams = %v, Images = %v", p.Teams, p.Images)
	}
	if !p.Allowed("alice", nil, "rstudio") {
		t.Errorf("alice not allowed rstudio, defined in another file")
	}
	want := "1 team, 2 images, 1 member, 2 admins, 0 local accounts from " + strings.Join(wantFiles, ", ")
	if got := p.Summary(); got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}

	// A file given twice, directly and through its folder, is read once.
	p, err = Load(dir, filepath.Join(dir, "00-base.yaml"))
	if err != nil {
		t.Fatalf("Load with a file twice: %v", err)
	}
	if len(p.Files) != 3 {
		t.Errorf("Files = %q, want 3 files", p.Files)
	}
}

func TestLoadDuplicates(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.yaml": `images:
  notebook: {image: a}
teams:
  research: {members: [alice]}
accounts:
  alice: "` + testHash + `"
api_tokens:
  ci: ` + testTokenHash1 + `
`,
		"b.yaml": `teams:
  other: {}
  research: {members: [bob]}
images:
  notebook: {image: b}
accounts:
  ALICE: "` + testHash + `"
api_tokens:
  ci: ` + testTokenHash2 + `
  deploy: ` + testTokenHash1 + `
`,
	})
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	_, err := Load(dir)
	want := []string{
		b + ":3: teams.research: defined twice (also at " + a + ":4)",
		b + ":5: images.notebook: defined twice (also at " + a + ":2)",
		b + ":7: accounts.alice: defined twice (also at " + a + ":6)",
		b + ":9: api_tokens.ci: defined twice (also at " + a + ":8)",
		b + ":10: api_tokens.deploy: same token hash as api_tokens.ci (at " + a + ":8); give each client its own token",
	}
	if got := problemStrings(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadProblemsFromSeveralFiles(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.yaml": "teams:\n  research:\n    images: [notebok]\n",
		"b.yaml": "images:\n  notebook: {image: x, prot: 1}\n",
	})
	_, err := Load(dir)
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	want := []string{
		a + `:3: teams.research.images[0]: unknown image "notebok" (known: notebook)`,
		b + `:2: images.notebook.prot: unknown field (did you mean "port"?)`,
	}
	if got := problemStrings(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadErrors(t *testing.T) {
	empty := t.TempDir()
	writeFiles(t, empty, map[string]string{"README.md": "# not a policy\n"})
	tests := []struct {
		name  string
		paths []string
		want  string
	}{
		{"no paths", nil, "loading policy: no policy file or folder given"},
		{"missing file", []string{filepath.Join(empty, "nope.yaml")}, "loading policy: stat " + filepath.Join(empty, "nope.yaml") + ": no such file or directory"},
		{"no policy files", []string{empty}, "loading policy: no policy files (*.yaml, *.yml) found in " + empty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Load(tt.paths...)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Load() = %v, %v; want error %q", p, err, tt.want)
			}
			var errs Errors
			if errors.As(err, &errs) {
				t.Errorf("file-system error reported as Errors")
			}
		})
	}
}

func TestLoadSymlinkedConfigMap(t *testing.T) {
	// The layout Kubernetes uses for a mounted config map.
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"..2024_01_01/policy.yaml": "admins: [monika]\n"})
	if err := os.Symlink("..2024_01_01", filepath.Join(dir, "..data")); err != nil {
		t.Skipf("symlinks not supported: %v", err)
	}
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), filepath.Join(dir, "policy.yaml")); err != nil {
		t.Fatal(err)
	}
	p, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !p.IsAdmin("monika") || len(p.Files) != 1 {
		t.Errorf("policy = %s", p.Summary())
	}
}

func TestExamplePolicy(t *testing.T) {
	p, err := Load("example.yaml")
	if err != nil {
		t.Fatalf("example.yaml does not load:\n%v", err)
	}
	if got, want := p.Summary(), "1 team, 1 image, 2 members, 1 admin, 0 local accounts from example.yaml"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	img := p.Images["testapp"]
	if img == nil || img.Image != "hubgate/testapp:latest" || img.Port != 8888 || !strings.HasPrefix(img.Description, "Test app") {
		t.Errorf("testapp = %+v", img)
	}
	r := p.Teams["research"]
	if r == nil || r.Limits != (Limits{Memory: 1 << 30, CPUs: 1, Pids: 512}) || r.IdleTimeout.String() != "2h0m0s" {
		t.Errorf("research = %+v", r)
	}
	if len(p.Accounts) != 0 {
		t.Errorf("example.yaml has local accounts")
	}
	if !p.Allowed("alice", nil, "testapp") || !p.Allowed("someone", []string{"oidc:researchers"}, "testapp") {
		t.Errorf("example.yaml does not let its members in")
	}
	// Alone (make run without the Jupyter image) it offers the test app only.
	if g := p.Grant("admin", nil); !slices.Equal(g.Images, []string{"testapp"}) {
		t.Errorf("admin's images from example.yaml alone: %v, want [testapp]", g.Images)
	}
}

// make run serves example.yaml and example-notebook.yaml as one folder
// when the Jupyter image is built: both servers, for the same people.
func TestExamplePolicyWithNotebook(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"example.yaml", "example-notebook.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Load(dir)
	if err != nil {
		t.Fatalf("example.yaml + example-notebook.yaml do not load:\n%v", err)
	}
	nb := p.Images["notebook"]
	if nb == nil || nb.Image != "hubgate/jupyter-debian:latest" || nb.Port != 8888 || nb.Home != "/home/jovyan" {
		t.Fatalf("notebook = %+v", nb)
	}
	for _, who := range []struct {
		user   string
		groups []string
	}{{"admin", nil}, {"alice", nil}, {"someone", []string{"oidc:researchers"}}} {
		g := p.Grant(who.user, who.groups)
		if !slices.Equal(g.Images, []string{"notebook", "testapp"}) {
			t.Errorf("%s gets %v, want [notebook testapp]", who.user, g.Images)
		}
		if g.Limits.Memory != 2<<30 || g.IdleTimeout != 2*time.Hour {
			t.Errorf("%s gets limits %+v, idle %s", who.user, g.Limits, g.IdleTimeout)
		}
	}
	if p.Allowed("bob", nil, "notebook") {
		t.Errorf("bob, in no team, may start the notebook")
	}
}
