package policies

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestStorageAndRetention(t *testing.T) {
	p := mustParse(t, `
retention: 720h
images:
  nb: {image: x}
teams:
  small: {members: [a, b], images: [nb], storage: {soft: 20GiB, hard: 25GiB}}
  big: {members: [b], images: [nb], storage: {soft: 1TB}}
  none: {members: [c], images: [nb]}
`)
	if p.Retention != 720*time.Hour {
		t.Errorf("retention = %v", p.Retention)
	}
	if got := p.Grant("a", nil).Storage; got != (Storage{Soft: 20 << 30, Hard: 25 << 30}) {
		t.Errorf("a's storage = %+v", got)
	}
	// b is in both: the largest of each, where unset (no limit) wins.
	if got := p.Grant("b", nil).Storage; got != (Storage{Soft: 1e12, Hard: 0}) {
		t.Errorf("b's storage = %+v", got)
	}
	if got := p.Grant("c", nil).Storage; got != (Storage{}) {
		t.Errorf("c's storage = %+v", got)
	}
	if p := mustParse(t, "retention: forever\n"); p.Retention != 0 {
		t.Errorf("forever = %v", p.Retention)
	}
	if p := mustParse(t, "admins: [a]\n"); p.Retention != 0 {
		t.Errorf("default retention = %v, want 0 (keep forever)", p.Retention)
	}
}

func TestStorageProblems(t *testing.T) {
	_, err := Parse("policy.yaml", []byte(`retention: 5s
images:
  nb: {image: x}
teams:
  t:
    members: [a]
    images: [nb]
    storage: {soft: 20GiB, hard: 10GiB, medium: 1}
  u:
    members: [a]
    storage: {soft: lots}
`))
	got := problemStrings(t, err)
	want := []string{
		`policy.yaml:1: retention: retention 5s is too short: at least 10s (or forever)`,
		`policy.yaml:8: teams.t.storage.medium: unknown field (known fields: soft, hard)`,
		`policy.yaml:8: teams.t.storage.hard: hard 10GiB is below soft 20GiB: the hard limit must be at least the soft one`,
		`policy.yaml:11: teams.u.storage.soft: invalid size "lots": use a number of bytes or a number with a unit such as "512MiB", "4GiB" or "1G"`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", join(got), join(want))
	}
}

func TestStorageDiff(t *testing.T) {
	old := mustParse(t, "images: {nb: {image: x}}\nteams: {t: {members: [a], images: [nb], storage: {hard: 1GiB}}}\n")
	new := mustParse(t, "images: {nb: {image: x}}\nteams: {t: {members: [a], images: [nb], storage: {hard: 2GiB}}}\n")
	lines := strings.Join(Diff(old, new).Lines(), "\n")
	if !strings.Contains(lines, "a: storage hard 1GiB -> 2GiB") {
		t.Errorf("diff lines:\n%s", lines)
	}
}
