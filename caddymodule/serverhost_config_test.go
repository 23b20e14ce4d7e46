package caddymodule

import (
	"strings"
	"testing"

	"github.com/hubgate/hubgate/caddymodule/serverhost"
	"github.com/hubgate/hubgate/policies"
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
	pol, err := policies.Parse("p.yaml", []byte("images:\n  notebook: {image: x, port: 1}\nteams:\n  t:\n    members: [alice]\n    images: [notebook]\n"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _ := serverhost.Parse("{server}--{user}.hub.example.org")
	sh := &serverHosts{tmpl: tmpl, hubHost: "hub.example.org", policy: func() *policies.Policy { return pol }}
	permissions.Store("perm-test", sh)
	defer permissions.Delete("perm-test")
	p = TLSPermission{Name: "perm-test"}
	for host, ok := range map[string]bool{
		"hub.example.org": true, "notebook--alice.hub.example.org": true,
		"notebook--mallory.hub.example.org": false, "rstudio--alice.hub.example.org": false,
		"evil.example.org": false, "x.notebook--alice.hub.example.org": false,
	} {
		if err := p.CertificateAllowed(t.Context(), host); (err == nil) != ok {
			t.Errorf("%s: allowed %v, want %v", host, err == nil, ok)
		}
	}
}
