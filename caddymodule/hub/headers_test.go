package hub

import (
	"net/http"
	"strings"
	"testing"
)

func TestIdentityHeaderVariants(t *testing.T) {
	for _, name := range []string{
		"Authorization", "AUTHORIZATION", "X-Forwarded-User", "x_forwarded_user", "X_FORWARDED_USER",
		"X-Hubgate-User", "x_hubgate_groups", "Remote-User", "REMOTE_USER", "X-Remote-User",
		"X-Auth-Request-Email", "X-Forwarded-Email", "Proxy-Authorization",
		"X-Hubgate-" + strings.Repeat("a", 100), // longer than the fast path's buffer
	} {
		if !identityHeader(name) {
			t.Errorf("%q not stripped", name)
		}
	}
	for _, name := range []string{"Accept", "Cookie", "X-Forwarded-For", "X-Forwarded-Proto", "Content-Type", "X-Requested-With", strings.Repeat("b", 100)} {
		if identityHeader(name) {
			t.Errorf("%q stripped", name)
		}
	}
}

func BenchmarkStripIdentityHeaders(b *testing.B) {
	base := http.Header{
		"Accept": {"*/*"}, "User-Agent": {"x"}, "Cookie": {"a=1; __Host-hubgate-session=v"},
		"X-Forwarded-For": {"1.2.3.4"}, "Sec-Fetch-Mode": {"cors"}, "Accept-Encoding": {"gzip"},
	}
	b.ReportAllocs()
	for b.Loop() {
		StripIdentityHeaders(base)
	}
}
