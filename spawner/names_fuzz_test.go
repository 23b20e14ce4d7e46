package spawner

import (
	"regexp"
	"strings"
	"testing"
)

// dockerNameRE is the shape Docker accepts for container and volume names.
var dockerNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// fuzzPrefix turns arbitrary bytes into a valid deployment prefix
// ([a-z0-9][a-z0-9-]{0,39}), so the fuzzer explores prefixes too.
func fuzzPrefix(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 40; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			b.WriteByte(c)
		case b.Len() > 0:
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		return "hubgate"
	}
	return b.String()
}

// FuzzContainerNames: distinct (prefix, user, server) never share a
// container name, distinct (prefix, user) never share a volume name, no
// container or volume ever has an internal name (the network lock's), and
// every name is one Docker accepts.
func FuzzContainerNames(f *testing.F) {
	f.Add("hubgate", "network", "lock", "hubgate", "network", "lock")
	f.Add("hubgate", "alice", "note-book", "hubgate", "alice-note", "book")
	f.Add("a", "b", "c", "a-b", "c", "d")
	f.Add("hubgate", "home", "x", "hubgate", "x", "home")
	f.Add("h", "a_2db", "x", "h", "a-b", "x")
	f.Add("h", "Alice", "x", "h", "_41lice", "x")
	f.Add("h", "network.lock", "", "h", "network", ".lock")
	f.Add("hubgate-network", "lock", "x", "hubgate", "network", "lock-x")
	f.Fuzz(func(t *testing.T, p1, u1, s1, p2, u2, s2 string) {
		p1, p2 = fuzzPrefix(p1), fuzzPrefix(p2)
		c1, c2 := ContainerName(p1, u1, s1), ContainerName(p2, u2, s2)
		if c1 == c2 && (p1 != p2 || u1 != u2 || s1 != s2) {
			t.Fatalf("ContainerName(%q, %q, %q) = ContainerName(%q, %q, %q) = %q", p1, u1, s1, p2, u2, s2, c1)
		}
		v1, v2 := VolumeName(p1, u1), VolumeName(p2, u2)
		if v1 == v2 && (p1 != p2 || u1 != u2) {
			t.Fatalf("VolumeName(%q, %q) = VolumeName(%q, %q) = %q", p1, u1, p2, u2, v1)
		}
		for _, n := range []string{c1, v1} {
			if !dockerNameRE.MatchString(n) {
				t.Fatalf("name %q is not a valid Docker name", n)
			}
			for _, internal := range []string{InternalName(p1, "network-lock"), InternalName(p2, "network-lock"), InternalName(p1, u1), InternalName(p2, s2)} {
				if n == internal {
					t.Fatalf("name %q is the internal name of a deployment", n)
				}
			}
			if n == p1 || n == p2 {
				t.Fatalf("name %q is a deployment's network name", n)
			}
		}
		// Both parts come back out of the container name.
		rest := strings.TrimPrefix(c1, p1+"-")
		eu, es, ok := strings.Cut(rest, "-")
		bu, oku := UnescapeName(eu)
		bs, oks := UnescapeName(es)
		if !ok || !oku || !oks || bu != u1 || bs != s1 {
			t.Fatalf("ContainerName(%q, %q, %q) = %q does not decode back: %q %q", p1, u1, s1, c1, bu, bs)
		}
	})
}
