package policies

import (
	"os"
	"testing"
	"time"

	"github.com/hubgate/hubgate/policies/username"
)

// parseDeadline is the most any input may cost Parse. The budget keeps
// every input near a millisecond (the merge-key bomb is refused in
// microseconds; before the budget it took 1.6 s at depth 6 and ten times
// more per level, which this catches); the second leaves room for a
// shared, loaded machine.
const parseDeadline = time.Second

// FuzzParse: no input makes Parse panic or take longer than parseDeadline;
// a policy it accepts holds only canonical user names, only known images,
// and limits with the defaults filled in.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("example.yaml"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		grantPolicy,
		"admins: [a]\nimages:\n  n: {image: x}\nteams:\n  t: {members: [a], images: [n]}\n",
		"a: &a {<<: *a}\n",
		mergeBomb(6),
		mergeBomb(3),
		"admins: &a [*a]\nimages:\n  x: &x {<<: *x}\n",
		"defaults: {limits: {memory: 2GiB, pids: 0}}\nimages: {nb: {image: n, read_only: true, cap_add: [chown]}}\nteams: {t: {members: [Alice], images: [nb]}}\n",
		"admins: [\"\\u212Aelvin\", \"ａｄｍｉｎ\"]\n",
		"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		p, err := Parse("fuzz.yaml", data)
		if took := time.Since(start); took > parseDeadline {
			t.Fatalf("Parse took %v (> %v) on %d bytes", took, parseDeadline, len(data))
		}
		if (p == nil) == (err == nil) {
			t.Fatalf("Parse returned policy %v and error %v", p, err)
		}
		if err != nil {
			return
		}
		users := append([]string(nil), p.Admins...)
		for u := range p.Accounts {
			users = append(users, u)
		}
		for name, team := range p.Teams {
			users = append(users, team.Members...)
			for _, img := range team.Images {
				if p.Images[img] == nil {
					t.Fatalf("team %s grants unknown image %q", name, img)
				}
			}
			if team.Limits.Memory < 0 || team.Limits.Pids < 0 || team.Limits.CPUs < 0 {
				t.Fatalf("team %s has negative limits %+v", name, team.Limits)
			}
		}
		for _, u := range users {
			if err := username.Check(u); err != nil {
				t.Fatalf("accepted policy holds a user name that is not canonical: %v", err)
			}
		}
	})
}
