package caddymodule

import (
	"net/http"
	"strings"
	"testing"
)

func TestCookieValue(t *testing.T) {
	cases := []struct {
		lines []string
		want  string
	}{
		{nil, ""},
		{[]string{"a=1; __Host-hubgate-session=abc; b=2"}, "abc"},
		{[]string{"__Host-hubgate-session=abc"}, "abc"},
		{[]string{"x=1", "__Host-hubgate-session=\"q\""}, "q"},
		{[]string{"__Host-hubgate-sessionX=nope; __Host-hubgate-session=yes"}, "yes"},
		{[]string{"__host-hubgate-session=case"}, ""},
		{[]string{"x__Host-hubgate-session=no"}, ""},
	}
	for _, c := range cases {
		hdr := http.Header{}
		for _, l := range c.lines {
			hdr.Add("Cookie", l)
		}
		if got := cookieValue(hdr, sessionCookie); got != c.want {
			t.Errorf("cookieValue(%q) = %q, want %q", c.lines, got, c.want)
		}
	}
}

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
		stripIdentityHeaders(base)
	}
}
