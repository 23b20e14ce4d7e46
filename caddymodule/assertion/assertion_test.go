package assertion

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/hubgate/hubgate/caddymodule/session"
)

func TestAssertionSignerKeyIsStableAndVerifies(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	a1, err := Load(context.Background(), st, "hubgate/t/assertion.key", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := Load(context.Background(), st, "hubgate/t/assertion.key", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if string(a1.JWKS()) != string(a2.JWKS()) {
		t.Fatal("the signing key changed between loads")
	}
	if strings.Contains(string(a1.JWKS()), `"d"`) {
		t.Fatal("the JWKS contains the private key")
	}
	s := &session.Session{User: "alice", Name: "Alice", Groups: []string{"github:lab/ds"}}
	raw, err := a2.Sign("https://hub.example", s, "notebook")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := a2.Sign("https://hub.example", s, "notebook"); again != raw {
		t.Error("a fresh assertion was signed within half its lifetime")
	}
	if other, _ := a2.Sign("https://hub.example", s, "rstudio"); other == raw {
		t.Error("the assertion for another server was reused")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(a1.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var c Claims
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
