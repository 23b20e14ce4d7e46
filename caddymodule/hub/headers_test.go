package hub

import (
	"net/http"
	"strings"
	"testing"
)

func TestIdentityHeaderRule(t *testing.T) {
	for _, name := range []string{
		"Authorization", "AUTHORIZATION", "X-Forwarded-User", "x_forwarded_user", "X_FORWARDED_USER",
		"X-Hubgate-User", "x_hubgate_groups", "Remote-User", "REMOTE_USER", "X-Remote-User",
		"X-Auth-Request-Email", "X-Forwarded-Email", "Proxy-Authorization",
		"X-Authenticated-User", "X-Remote-Email", "X-User", "X-Email", "X-WebAuth-User", "X-Forwarded-Groups",
		"X-Forwarded-Preferred-Username", "X-Forwarded-Access-Token", "X-Id-Token", "X-Display-Name",
		"X-Ms-Client-Principal-Name", "Cf-Access-Authenticated-User-Email", "X-Amzn-Oidc-Identity",
		"X-Goog-Authenticated-User-Email", "X-Pomerium-Jwt-Assertion", "X-Jwt-Assertion", "X-Login", "X-User-Roles",
		"X-Hubgate-" + strings.Repeat("a", 100),
	} {
		if !IsIdentityHeader(name) {
			t.Errorf("%q is not recognised as an identity header", name)
		}
	}
	for _, name := range []string{"Accept", "Cookie", "User-Agent", "Sec-Fetch-User", "X-Forwarded-For", "X-Forwarded-Proto",
		"Content-Type", "X-Requested-With", "X-Xsrftoken", "Host", strings.Repeat("b", 100)} {
		if IsIdentityHeader(name) {
			t.Errorf("%q stripped as identity", name)
		}
	}
	for _, name := range []string{"X-Real-IP", "Forwarded", "X-Scheme", "X-Original-URL", "X-Original-Host", "X-Forwarded-Prefix", "True-Client-IP"} {
		if !IsForwardingHeader(name) {
			t.Errorf("%q is not recognised as a forwarding header", name)
		}
	}
}

func TestHeaderRulesApplyToTrailersAndConnection(t *testing.T) {
	r, _ := http.NewRequest("GET", "http://x/", nil)
	r.Header.Set("Connection", "Authorization, X-Hubgate-User, keep-alive")
	r.Header.Set("X-Team-Secret", "1")
	r.Header.Set("Accept", "*/*")
	r.Trailer = http.Header{"X-Hubgate-User": {"admin"}, "Authorization": {"x"}, "X-Checksum": {"1"}}
	newHeaderRules([]string{"x_team_secret"}).apply(r)
	if got := r.Header.Get("Connection"); got != "keep-alive" {
		t.Errorf("Connection = %q", got)
	}
	if r.Header.Get("X-Team-Secret") != "" || r.Header.Get("Accept") == "" {
		t.Errorf("headers after the rule: %v", r.Header)
	}
	if len(r.Trailer) != 1 || r.Trailer.Get("X-Checksum") == "" {
		t.Errorf("trailers after the rule: %v", r.Trailer)
	}
}

func BenchmarkStripHeaders(b *testing.B) {
	base := http.Header{
		"Accept": {"*/*"}, "User-Agent": {"x"}, "Cookie": {"a=1; __Host-hubgate-session=v"},
		"X-Forwarded-For": {"1.2.3.4"}, "Sec-Fetch-Mode": {"cors"}, "Accept-Encoding": {"gzip"},
	}
	rules := newHeaderRules(nil)
	r, _ := http.NewRequest("GET", "http://x/", nil)
	b.ReportAllocs()
	for b.Loop() {
		r.Header = base
		rules.apply(r)
	}
}
