package caddymodule

import (
	"strings"
	"testing"
)

// TestServerHostValidation: shares refuse to start without server_host
// and say why; server_host needs public_url and a template that names
// each server once.
func TestServerHostValidation(t *testing.T) {
	for _, c := range []struct {
		h    Handler
		want string // "" is valid
	}{
		{Handler{Policy: []string{"p"}, Shares: true}, "shares need server_host"},
		{Handler{Policy: []string{"p"}, ServerHost: "{server}--{user}.hub.example.org"}, "needs public_url"},
		{Handler{Policy: []string{"p"}, ServerHost: "{user}.hub.example.org", PublicURL: "https://hub.example.org"}, "{server}"},
		{Handler{Policy: []string{"p"}, ServerHost: "{server}--{user}.example.org", PublicURL: "https://a--b.example.org"}, "is itself a server host"},
		{Handler{Policy: []string{"p"}, ServerHost: "{server}--{user}.hub.example.org", PublicURL: "https://hub.example.org", Shares: true}, ""},
	} {
		h := c.h
		h.applyDefaults()
		err := h.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.h, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: error %v, want one saying %q", c.h, err, c.want)
		}
	}
}

// TestTLSPermission: certificates only for the hub and servers the policy
// knows.
func TestTLSPermission(t *testing.T) {
	p := TLSPermission{Name: "nobody-here"}
	if err := p.CertificateAllowed(t.Context(), "hub.example.org"); err == nil {
		t.Fatal("a deployment without server_host allowed a certificate")
	}
}
