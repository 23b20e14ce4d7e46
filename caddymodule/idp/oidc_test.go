package idp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// testOP is a minimal OpenID provider for unit tests: discovery, a JWKS,
// a token endpoint that answers with whatever ID token claims the test
// set (so it can misbehave: other audience, expired, wrong nonce), and
// userinfo.
type testOP struct {
	srv      *httptest.Server
	key      *ecdsa.PrivateKey
	mu       sync.Mutex
	claims   map[string]any // ID token claims; iss/aud/exp/iat defaulted
	userinfo map[string]any
	verifier string // the last code_verifier received
	noIDTok  bool
}

func newTestOP(t *testing.T) *testOP {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	op := &testOP{key: key}
	mux := http.NewServeMux()
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	iss := op.srv.URL
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss,
			"authorization_endpoint":                iss + "/authorize",
			"token_endpoint":                        iss + "/token",
			"jwks_uri":                              iss + "/jwks",
			"userinfo_endpoint":                     iss + "/userinfo",
			"end_session_endpoint":                  iss + "/end_session?tenant=x",
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		op.mu.Lock()
		defer op.mu.Unlock()
		op.verifier = r.PostForm.Get("code_verifier")
		w.Header().Set("Content-Type", "application/json")
		if op.verifier == "" {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": "code_verifier required"})
			return
		}
		resp := map[string]any{"access_token": "at-123", "token_type": "Bearer", "expires_in": 300}
		if !op.noIDTok {
			resp["id_token"] = op.sign(t, op.claims)
		}
		_ = json.NewEncoder(w).Encode(resp)
	})
	mux.HandleFunc("/userinfo", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer at-123" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		op.mu.Lock()
		defer op.mu.Unlock()
		_ = json.NewEncoder(w).Encode(op.userinfo)
	})
	return op
}

func (op *testOP) sign(t *testing.T, claims map[string]any) string {
	all := map[string]any{
		"iss": op.srv.URL, "aud": "hubgate", "sub": "u-1",
		"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(),
	}
	for k, v := range claims {
		if v == nil {
			delete(all, k)
			continue
		}
		all[k] = v
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: op.key, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(all).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (op *testOP) set(claims, userinfo map[string]any) {
	op.mu.Lock()
	op.claims, op.userinfo = claims, userinfo
	op.mu.Unlock()
}

func newTestOIDC(op *testOP, mod func(*OIDCOptions)) *OIDC {
	o := OIDCOptions{
		Name: "test", Issuer: op.srv.URL, ClientID: "hubgate", ClientSecret: "s3cret",
		Scopes: []string{"openid", "profile", "email"}, GroupsClaim: "groups", Label: "Test",
		Timeout: 5 * time.Second,
	}
	if mod != nil {
		mod(&o)
	}
	return NewOIDC(o)
}

func TestOIDCAuthCodeURLCarriesStateNoncePKCE(t *testing.T) {
	op := newTestOP(t)
	p := newTestOIDC(op, nil)
	f := NewFlow("https://hub.example/hub/oauth_callback")
	raw, err := p.AuthCodeURL(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(raw)
	q := u.Query()
	sum := sha256.Sum256([]byte(f.Verifier))
	want := map[string]string{
		"state": f.State, "nonce": f.Nonce, "code_challenge_method": "S256",
		"code_challenge": base64.RawURLEncoding.EncodeToString(sum[:]),
		"redirect_uri":   f.RedirectURI, "client_id": "hubgate", "response_type": "code",
		"scope": "openid profile email",
	}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	if q.Get("code_verifier") != "" || strings.Contains(raw, f.Verifier) {
		t.Error("the PKCE verifier leaked into the authorization URL")
	}
}

func TestOIDCExchange(t *testing.T) {
	op := newTestOP(t)
	f := NewFlow("https://hub.example/hub/oauth_callback")
	base := map[string]any{"nonce": f.Nonce, "preferred_username": "Alice", "email": "alice@example.org", "email_verified": true, "name": "Alice Liddell", "groups": []string{"researchers", "bad group", "staff"}}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		name     string
		claims   map[string]any
		userinfo map[string]any
		mod      func(*OIDCOptions)
		reason   string // "" = success
		check    func(t *testing.T, id *Identity)
	}{
		{name: "good", claims: base, check: func(t *testing.T, id *Identity) {
			if id.User != "alice" || id.Subject != "u-1" || id.Email != "alice@example.org" || id.Name != "Alice Liddell" {
				t.Errorf("identity %+v", id)
			}
			if !slices.Equal(id.Groups, []string{"oidc:test/researchers", "oidc:test/staff"}) {
				t.Errorf("groups %v", id.Groups)
			}
			if id.IDToken == "" {
				t.Error("raw ID token not kept for logout")
			}
		}},
		{name: "other audience", claims: with("aud", "another-app"), reason: "id_token_audience"},
		{name: "expired", claims: with("exp", time.Now().Add(-time.Minute).Unix(), "iat", time.Now().Add(-time.Hour).Unix()), reason: "id_token_expired"},
		{name: "wrong nonce", claims: with("nonce", "someone-elses"), reason: "nonce_mismatch"},
		{name: "no nonce", claims: with("nonce", nil), reason: "nonce_mismatch"},
		{name: "other issuer", claims: with("iss", "https://evil.example"), reason: "id_token_issuer"},
		{name: "bad at_hash", claims: with("at_hash", "AAAAAAAAAAAAAAAAAAAAAA"), reason: "at_hash_mismatch"},
		{name: "email fallback", claims: with("preferred_username", nil), userinfo: map[string]any{"sub": "u-1"}, check: func(t *testing.T, id *Identity) {
			if id.User != "alice@example.org" {
				t.Errorf("user %q, want the verified email", id.User)
			}
		}},
		{name: "unverified email is no user name", claims: with("preferred_username", nil, "email_verified", false), userinfo: map[string]any{"sub": "u-1"}, reason: "no_username"},
		{name: "email_verified as string", claims: with("email_verified", "true"), mod: func(o *OIDCOptions) { o.RequireEmailVerified = true }},
		{name: "email not verified but required", claims: with("email_verified", false), mod: func(o *OIDCOptions) { o.RequireEmailVerified = true }, reason: "email_not_verified"},
		{name: "bad user name", claims: with("preferred_username", "a/b"), reason: "bad_username"},
		{name: "custom username claim", claims: with("upn", "Bob"), mod: func(o *OIDCOptions) { o.UsernameClaim = "upn" }, check: func(t *testing.T, id *Identity) {
			if id.User != "bob" {
				t.Errorf("user %q", id.User)
			}
		}},
		{name: "claims from userinfo", claims: map[string]any{"nonce": f.Nonce},
			userinfo: map[string]any{"sub": "u-1", "preferred_username": "carol", "email": "c@example.org", "email_verified": true, "groups": "solo"},
			check: func(t *testing.T, id *Identity) {
				if id.User != "carol" || !slices.Equal(id.Groups, []string{"oidc:test/solo"}) || id.Email != "c@example.org" {
					t.Errorf("identity %+v", id)
				}
			}},
		{name: "userinfo for another subject", claims: map[string]any{"nonce": f.Nonce},
			userinfo: map[string]any{"sub": "u-2", "preferred_username": "mallory"}, reason: "userinfo_subject_mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			op.set(tc.claims, tc.userinfo)
			p := newTestOIDC(op, tc.mod)
			id, err := p.Exchange(context.Background(), "code-1", f)
			if tc.reason != "" {
				var le *LoginError
				if !errors.As(err, &le) || le.Reason != tc.reason {
					t.Fatalf("err = %v, want reason %s", err, tc.reason)
				}
				if le.Message == "" {
					t.Error("no message for the user")
				}
				return
			}
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if op.verifier != f.Verifier {
				t.Errorf("token request carried verifier %q, want the flow's", op.verifier)
			}
			if tc.check != nil {
				tc.check(t, id)
			}
		})
	}
}

func TestOIDCMissingVerifierRefusedByProvider(t *testing.T) {
	op := newTestOP(t)
	op.set(map[string]any{}, nil)
	f := NewFlow("https://hub.example/hub/oauth_callback")
	f.Verifier = ""
	_, err := newTestOIDC(op, nil).Exchange(context.Background(), "code-1", f)
	var le *LoginError
	if !errors.As(err, &le) || le.Reason != "token_exchange_failed" || !strings.Contains(le.Err.Error(), "invalid_grant") {
		t.Fatalf("err = %v, want token_exchange_failed (invalid_grant)", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatal("the client secret leaked into an error")
	}
}

func TestOIDCNoIDToken(t *testing.T) {
	op := newTestOP(t)
	op.noIDTok = true
	_, err := newTestOIDC(op, nil).Exchange(context.Background(), "c", NewFlow("https://h/cb"))
	if Reason(err) != "no_id_token" {
		t.Fatalf("err = %v", err)
	}
}

func TestOIDCEndSessionURL(t *testing.T) {
	op := newTestOP(t)
	p := newTestOIDC(op, nil)
	raw := p.EndSessionURL(context.Background(), "the-id-token", "https://hub.example/")
	u, err := url.Parse(raw)
	if err != nil || !strings.HasPrefix(raw, op.srv.URL+"/end_session?") {
		t.Fatalf("end session URL %q", raw)
	}
	q := u.Query()
	if q.Get("tenant") != "x" || q.Get("id_token_hint") != "the-id-token" || q.Get("post_logout_redirect_uri") != "https://hub.example/" || q.Get("client_id") != "hubgate" {
		t.Fatalf("end session query %v", q)
	}
	if o := p.EndSessionOrigin(context.Background()); o != op.srv.URL {
		t.Fatalf("origin %q", o)
	}
}

func TestOIDCDiscoveryIsLazyAndRetried(t *testing.T) {
	var hits int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	p := NewOIDC(OIDCOptions{Name: "x", Issuer: srv.URL, ClientID: "c", Timeout: time.Second})
	if hits != 0 {
		t.Fatal("NewOIDC made a network call")
	}
	for i := 0; i < 3; i++ {
		if _, err := p.AuthCodeURL(context.Background(), NewFlow("https://h/cb")); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	}
	if hits != 1 {
		t.Fatalf("discovery tried %d times within the retry window, want 1", hits)
	}
}

func TestCheckProviderURL(t *testing.T) {
	ok := []string{"https://sso.example.org/realms/x", "http://127.0.0.1:9999/", "http://localhost:1", "http://[::1]:80"}
	bad := []string{"http://sso.example.org", "ftp://x", "https://", "sso.example.org", "https://u:p@x.org", "https://x.org/?a=b"}
	for _, u := range ok {
		if err := CheckProviderURL("issuer", u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range bad {
		if err := CheckProviderURL("issuer", u); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}

func TestSanitizeEmailAndValidUser(t *testing.T) {
	cases := map[string]string{
		"Alice@Example.org":      "alice@example.org",
		" bob.b+x@ex-ample.org ": "bob.b+x@ex-ample.org",
		"a b@example.org":        "",
		"a@b@example.org":        "",
		"a/b@example.org":        "",
		"alice@localhost":        "",
		"@example.org":           "",
		"alice@.example.org":     "",
	}
	for in, want := range cases {
		if got := SanitizeEmail(in); got != want {
			t.Errorf("SanitizeEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOIDCGroupsAreQualifiedByProvider: with several OIDC providers, one
// provider's users cannot claim another provider's groups (M2): groups
// carry the provider's name; only a gateway with one provider also gets
// the bare "oidc:<group>" form.
func TestOIDCGroupsAreQualifiedByProvider(t *testing.T) {
	if got := oidcGroups([]any{"staff"}, "b", false); !slices.Equal(got, []string{"oidc:b/staff"}) {
		t.Errorf("several providers: %v", got)
	}
	if got := oidcGroups("staff", "a", true); !slices.Equal(got, []string{"oidc:a/staff", "oidc:staff"}) {
		t.Errorf("one provider: %v", got)
	}
}

// TestOIDCUsernamePrefix (M2): a provider's prefix is part of every user
// name it gives, so it cannot give a name another provider gives bare.
func TestOIDCUsernamePrefix(t *testing.T) {
	p := NewOIDC(OIDCOptions{Name: "uni", UsernameClaim: "preferred_username", UsernamePrefix: "uni-"})
	id, err := p.identity("s-1", map[string]any{"preferred_username": "Alice"})
	if err != nil || id.User != "uni-alice" {
		t.Fatalf("identity %+v, %v; want user uni-alice", id, err)
	}
}
