package caddymodule

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/hubgate/hubgate/caddymodule/session"
)

func TestValidateAuth(t *testing.T) {
	good := func() *Handler {
		return &Handler{
			Policy: []string{"p.yaml"},
			OIDC: []*OIDCConfig{
				{Name: "keycloak", Issuer: "https://sso.example.org/realms/r", ClientID: "hubgate", ClientSecret: "{env.X}"},
				{Name: "dev", Issuer: "http://127.0.0.1:5556/dex", ClientID: "hubgate"},
				{Name: "fromenv", Issuer: "{env.ISSUER}", ClientID: "x"},
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

func TestAssertionSignerKeyIsStableAndVerifies(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	cfg := &AssertionConfig{Header: defaultAssertionHeader, TTL: caddy.Duration(time.Minute)}
	a1, err := loadAssertionSigner(context.Background(), st, "hubgate/t/assertion.key", cfg)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := loadAssertionSigner(context.Background(), st, "hubgate/t/assertion.key", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if string(a1.jwks) != string(a2.jwks) {
		t.Fatal("the signing key changed between loads")
	}
	if strings.Contains(string(a1.jwks), `"d"`) {
		t.Fatal("the JWKS contains the private key")
	}
	s := &session.Session{User: "alice", Name: "Alice", Groups: []string{"github:lab/ds"}}
	raw, err := a2.sign("https://hub.example", s, "notebook")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := a2.sign("https://hub.example", s, "notebook"); again != raw {
		t.Error("a fresh assertion was signed within half its lifetime")
	}
	if other, _ := a2.sign("https://hub.example", s, "rstudio"); other == raw {
		t.Error("the assertion for another server was reused")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(a1.jwks, &set); err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var c assertionClaims
	if err := tok.Claims(set.Keys[0].Key, &c); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if err := c.Validate(jwt.Expected{Issuer: "https://hub.example", Subject: "alice", AnyAudience: jwt.Audience{"notebook"}, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if c.Name != "Alice" || len(c.Groups) != 1 || c.Expiry.Time().Sub(c.IssuedAt.Time()) != time.Minute {
		t.Fatalf("claims %+v", c)
	}
}

func TestAuthStateStatesAndRevocations(t *testing.T) {
	a := newAuthState()
	if !a.consumeState("s1") || a.consumeState("s1") {
		t.Fatal("a state was accepted twice")
	}
	if a.isRevoked("sid") {
		t.Fatal("revoked before logout")
	}
	a.addRevoked("sid", time.Now().Add(time.Hour).Unix())
	if !a.isRevoked("sid") {
		t.Fatal("not revoked after logout")
	}
}
