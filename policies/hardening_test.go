package policies

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestDefaultLimits: a team without limits gets the built-in defaults
// (4 GiB, 1024 processes), the policy's defaults.limits replace them field
// by field, and a team's own value, 0 (no limit) included, wins.
func TestDefaultLimits(t *testing.T) {
	const images = "images:\n  nb: {image: n}\n"
	p := mustParse(t, images+`teams:
  plain: {members: [alice], images: [nb]}
  partial: {members: [bob], images: [nb], limits: {memory: 1GiB}}
  unlimited: {members: [carol], images: [nb], limits: {memory: 0, pids: 0}}
`)
	if want := (Limits{Memory: 4 << 30, Pids: 1024}); p.DefaultLimits != want {
		t.Errorf("DefaultLimits = %+v, want the built-in %+v", p.DefaultLimits, want)
	}
	for user, want := range map[string]Limits{
		"alice": {Memory: 4 << 30, Pids: 1024},
		"bob":   {Memory: 1 << 30, Pids: 1024},
		"carol": {},
	} {
		if got := p.Grant(user, nil).Limits; got != want {
			t.Errorf("Grant(%s).Limits = %+v, want %+v", user, got, want)
		}
	}

	p = mustParse(t, images+`defaults:
  limits: {memory: 2GiB, cpus: 1.5}
teams:
  plain: {members: [alice], images: [nb]}
  partial: {members: [bob], images: [nb], limits: {pids: 64}}
`)
	if want := (Limits{Memory: 2 << 30, CPUs: 1.5, Pids: 1024}); p.DefaultLimits != want {
		t.Errorf("DefaultLimits = %+v, want %+v", p.DefaultLimits, want)
	}
	if got, want := p.Grant("bob", nil).Limits, (Limits{Memory: 2 << 30, CPUs: 1.5, Pids: 64}); got != want {
		t.Errorf("Grant(bob).Limits = %+v, want %+v", got, want)
	}

	p = mustParse(t, images+"defaults: {limits: {memory: 0, pids: 0}}\nteams:\n  plain: {members: [alice], images: [nb]}\n")
	if got := p.Grant("alice", nil).Limits; got != (Limits{}) {
		t.Errorf("defaults of 0: Grant(alice).Limits = %+v, want no limit", got)
	}

	dir := t.TempDir()
	for name, src := range map[string]string{
		"a.yaml": images + "defaults: {limits: {pids: 100}}\n",
		"b.yaml": "defaults:\n  limits: {pids: 200}\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Load(dir)
	wantProblem(t, err, filepath.Join(dir, "b.yaml"), 1, "defined twice (also at "+filepath.Join(dir, "a.yaml")+":3)")

	_, err = Parse("p.yaml", []byte("defaults: {limits: {pids: 3}, memory: 1G}\n"))
	wantProblem(t, err, "p.yaml", 1, "pids 3 too low")
	wantProblem(t, err, "p.yaml", 1, `unknown field`)
}

// TestImageHardening: read_only and cap_add, with capability names
// checked against the Linux ones.
func TestImageHardening(t *testing.T) {
	p := mustParse(t, `images:
  web: {image: w, read_only: true, cap_add: [net_bind_service, CAP_CHOWN, NET_BIND_SERVICE]}
  plain: {image: p}
`)
	if w := p.Images["web"]; !w.ReadOnly || !reflect.DeepEqual(w.CapAdd, []string{"CHOWN", "NET_BIND_SERVICE"}) {
		t.Errorf("web = %+v; want read-only with CHOWN and NET_BIND_SERVICE", w)
	}
	if pl := p.Images["plain"]; pl.ReadOnly || pl.CapAdd != nil {
		t.Errorf("plain = %+v; want writable, no capability", pl)
	}

	_, err := Parse("p.yaml", []byte(`images:
  web:
    image: w
    read_only: yes please
    cap_add: [NET_BIND_SERVIC, ALL, FLY, {x: 1}]
`))
	wantProblem(t, err, "p.yaml", 4, "expected true or false")
	wantProblem(t, err, "p.yaml", 5, `unknown capability "NET_BIND_SERVIC" (did you mean "NET_BIND_SERVICE"?)`)
	wantProblem(t, err, "p.yaml", 5, "ALL would give back every one hubgate drops")
	wantProblem(t, err, "p.yaml", 5, `unknown capability "FLY" (known: AUDIT_CONTROL,`)
	wantProblem(t, err, "p.yaml", 5, "expected a string, got a mapping")
}
