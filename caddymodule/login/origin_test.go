package login

import (
	"net/http/httptest"
	"testing"
)

// TestOriginIsConfiguredNotChosenByTheClient (L8): with public_url, the
// OAuth redirect URI and the hub's origin ignore the client's Host; without
// it, they follow the request's own scheme (no https on a plain-http port).
func TestOriginIsConfiguredNotChosenByTheClient(t *testing.T) {
	r := httptest.NewRequest("GET", "http://evil.test:8080/hub/oauth_start/x", nil)
	a := &Authenticator{cfg: Config{PublicURL: "https://hub.example.org"}}
	if got := a.callbackURL(r); got != "https://hub.example.org/hub/oauth_callback" {
		t.Errorf("callback with public_url: %s", got)
	}
	b := &Authenticator{}
	if got := b.callbackURL(r); got != "http://evil.test:8080/hub/oauth_callback" {
		t.Errorf("callback without public_url on plain http: %s", got)
	}
	tlsReq := httptest.NewRequest("GET", "https://hub.test/hub/login", nil)
	if got := b.Origin(tlsReq); got != "https://hub.test" {
		t.Errorf("origin over TLS: %s", got)
	}
}
