package login

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzSafeNext: a redirect target after login is always a path on our own
// origin.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "/user/alice/notebook/", "//evil.test", "/\\evil", "https://evil.test", "/%2F%2Fevil", "/a?b=//c", "/\t/evil"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := SafeNext(in)
		u, err := url.Parse(out)
		if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || strings.HasPrefix(out, "/\\") {
			t.Fatalf("SafeNext(%q) = %q leaves the origin", in, out)
		}
		ref, _ := url.Parse("https://hub.test/hub/login")
		if got := ref.ResolveReference(u); got.Host != "hub.test" {
			t.Fatalf("SafeNext(%q) = %q resolves to %s", in, out, got)
		}
	})
}
