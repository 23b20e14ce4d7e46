package caddymodule

import (
	"testing"
	"time"
)

func TestValidateAuth(t *testing.T) {
	good := func() *Handler {
		return &Handler{
			Policy: []string{"p.yaml"},
			OIDC: []*OIDCConfig{
				{Name: "keycloak", Issuer: "https://sso.example.org/realms/r", ClientID: "hubgate", ClientSecret: "{env.X}", UsernamePrefix: "kc-"},
				{Name: "dev", Issuer: "http://127.0.0.1:5556/dex", ClientID: "hubgate", UsernamePrefix: "dev."},
				{Name: "fromenv", Issuer: "{env.ISSUER}", ClientID: "x", UsernamePrefix: "env-"},
			},
			GitHub:    &GitHubConfig{ClientID: "abc", Orgs: []string{"lab"}},
			Assertion: &AssertionConfig{},
		}
	}
	h := good()
	h.applyDefaults()
	if err := h.Validate(); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
	if h.OIDC[0].UsernameClaim != "preferred_username" || h.OIDC[0].GroupsClaim != "groups" || h.OIDC[0].Label != "Log in with keycloak" ||
		h.GitHub.URL != "https://github.com" || h.GitHub.APIURL != "https://api.github.com" || time.Duration(h.GitHub.RecheckInterval) != 10*time.Minute ||
		h.Assertion.Header != "X-Hubgate-Assertion" || time.Duration(h.Assertion.TTL) != time.Minute {
		t.Fatalf("defaults not applied: %+v %+v %+v", h.OIDC[0], h.GitHub, h.Assertion)
	}
	bad := map[string]func(h *Handler){
		"reserved name github":    func(h *Handler) { h.OIDC[0].Name = "github" },
		"reserved name local":     func(h *Handler) { h.OIDC[0].Name = "local" },
		"upper-case name":         func(h *Handler) { h.OIDC[0].Name = "KeyCloak" },
		"duplicate name":          func(h *Handler) { h.OIDC[1].Name = "keycloak" },
		"no issuer":               func(h *Handler) { h.OIDC[0].Issuer = "" },
		"no client id":            func(h *Handler) { h.OIDC[0].ClientID = "" },
		"http issuer":             func(h *Handler) { h.OIDC[0].Issuer = "http://sso.example.org" },
		"github without client":   func(h *Handler) { h.GitHub.ClientID = "" },
		"github http url":         func(h *Handler) { h.GitHub.URL = "http://github.example.org" },
		"github bad api url":      func(h *Handler) { h.GitHub.APIURL = "api.github.com" },
		"github team as org":      func(h *Handler) { h.GitHub.Orgs = []string{"lab/team"} },
		"negative recheck":        func(h *Handler) { h.GitHub.RecheckInterval = -1 },
		"assertion authorization": func(h *Handler) { h.Assertion.Header = "Authorization" },
		"assertion bad header":    func(h *Handler) { h.Assertion.Header = "X Bad" },
		"nil oidc entry":          func(h *Handler) { h.OIDC = append(h.OIDC, nil) },
		// M2: two providers giving bare names could take each other's.
		"oidc bare beside github": func(h *Handler) { h.OIDC[1].UsernamePrefix = "" },
		"two bare oidc providers": func(h *Handler) { h.GitHub = nil; h.OIDC[0].UsernamePrefix, h.OIDC[1].UsernamePrefix = "", "" },
		"bad username prefix":     func(h *Handler) { h.OIDC[0].UsernamePrefix = "Kc/" },
	}
	for name, mod := range bad {
		h := good()
		mod(h)
		h.applyDefaults()
		if err := h.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
