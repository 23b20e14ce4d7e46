package hub

import (
	"strings"
	"testing"
)

// FuzzIdentityHeader: the rule is case-blind and reads '_' as '-', and
// the gateway's own headers are always identity headers.
func FuzzIdentityHeader(f *testing.F) {
	for _, s := range []string{"X-Forwarded-User", "x_hubgate_user", "User-Agent", "Accept", "X-Remote-Email", "Sec-Fetch-User"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		a := IsIdentityHeader(name)
		if IsIdentityHeader(strings.ToUpper(name)) != a || IsIdentityHeader(strings.ReplaceAll(name, "-", "_")) != a {
			t.Fatalf("%q is classified differently by case or by '_'", name)
		}
		if IsIdentityHeader("X-Hubgate-"+name) != true {
			t.Fatalf("X-Hubgate-%s passes", name)
		}
	})
}
