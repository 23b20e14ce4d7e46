package caddymodule

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/session"
)

// AssertionConfig turns on the signed identity assertion: every request
// proxied to a user's server carries a short-lived JWT (ES256) saying who
// the gateway says the user is. Apps verify it with the public keys at
// /hub/.well-known/jwks.json. Its claims: iss (https://<site>), sub (the
// user name), name, email (when verified), groups (the identity provider
// groups), aud (the server's key, such as "notebook"), iat and exp.
type AssertionConfig struct {
	// Header is the request header that carries the JWT. A client can
	// never set it: it is removed from every proxied request first.
	// Default: "X-Hubgate-Assertion".
	Header string `json:"header,omitempty"`

	// TTL is how long an assertion is valid. Default: 60s.
	TTL caddy.Duration `json:"ttl,omitempty"`
}

const (
	defaultAssertionHeader = "X-Hubgate-Assertion"
	defaultAssertionTTL    = 60 * time.Second
)

var headerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)

func validateAssertionHeader(name string) error {
	if !headerNameRE.MatchString(name) {
		return fmt.Errorf("hubgate: assertion header %q is not a header name", name)
	}
	switch strings.ToLower(name) {
	case "authorization", "cookie", "host", "connection", "upgrade", "te", "trailer", "transfer-encoding",
		"content-length", "content-type", "x-hubgate-user", "proxy-authorization", "keep-alive":
		return fmt.Errorf("hubgate: assertion header %q is reserved", name)
	}
	return nil
}

// assertionSigner signs assertions with the deployment's ES256 key.
type assertionSigner struct {
	header string
	ttl    time.Duration
	signer jose.Signer
	jwks   []byte
	cache  *expirable.LRU[string, string]
}

// assertionClaims are the JWT's claims.
type assertionClaims struct {
	jwt.Claims
	Name   string   `json:"name,omitempty"`
	Email  string   `json:"email,omitempty"`
	Groups []string `json:"groups"`
}

// loadAssertionSigner loads the signing key from storage, creating it
// under the storage lock the first time, so every instance signs with the
// same key and a restart keeps it.
func loadAssertionSigner(ctx context.Context, st certmagic.Storage, key string, cfg *AssertionConfig) (*assertionSigner, error) {
	priv, err := loadECKey(ctx, st, key)
	if errors.Is(err, fs.ErrNotExist) {
		if err := st.Lock(ctx, key); err != nil {
			return nil, fmt.Errorf("lock %s: %w", key, err)
		}
		defer func() { _ = st.Unlock(context.WithoutCancel(ctx), key) }()
		priv, err = loadECKey(ctx, st, key)
		if errors.Is(err, fs.ErrNotExist) {
			priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return nil, err
			}
			der, err := x509.MarshalECPrivateKey(priv)
			if err != nil {
				return nil, err
			}
			if err := st.Store(ctx, key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
				return nil, fmt.Errorf("store %s: %w", key, err)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	pub := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: pub.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		return nil, err
	}
	ttl := time.Duration(cfg.TTL)
	return &assertionSigner{
		header: cfg.Header,
		ttl:    ttl,
		signer: signer,
		jwks:   jwks,
		cache:  expirable.NewLRU[string, string](10000, nil, max(ttl/2, time.Second)),
	}, nil
}

func loadECKey(ctx context.Context, st certmagic.Storage, key string) (*ecdsa.PrivateKey, error) {
	raw, err := st.Load(ctx, key)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%s in storage is not PEM", key)
	}
	priv, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s in storage: %w", key, err)
	}
	if priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s in storage is not a P-256 key", key)
	}
	return priv, nil
}

// sign returns an assertion, reusing one signed in the last half TTL for
// the same identity and audience.
func (a *assertionSigner) sign(iss string, s *session.Session, aud string) (string, error) {
	groups := s.Groups
	if groups == nil {
		groups = []string{}
	}
	ck := strings.Join(append([]string{iss, s.User, s.Name, s.Email, aud}, groups...), "\x00")
	if tok, ok := a.cache.Get(ck); ok {
		return tok, nil
	}
	now := time.Now()
	c := assertionClaims{
		Claims: jwt.Claims{
			Issuer:   iss,
			Subject:  s.User,
			Audience: jwt.Audience{aud},
			IssuedAt: jwt.NewNumericDate(now),
			Expiry:   jwt.NewNumericDate(now.Add(a.ttl)),
		},
		Name:   s.Name,
		Email:  s.Email,
		Groups: groups,
	}
	tok, err := jwt.Signed(a.signer).Claims(c).Serialize()
	if err != nil {
		return "", err
	}
	a.cache.Add(ck, tok)
	return tok, nil
}

// setAssertion adds the signed identity assertion to a request about to
// be proxied to server (after the client's identity headers are gone).
func (h *Handler) setAssertion(r *http.Request, s *session.Session, server string) {
	if h.auth == nil || h.auth.signer == nil {
		return
	}
	a := h.auth.signer
	r.Header.Del(a.header)
	tok, err := a.sign("https://"+r.Host, s, server)
	if err != nil {
		h.logger.Error("signing the identity assertion failed", zap.String("user", s.User), zap.Error(err))
		return
	}
	r.Header.Set(a.header, tok)
}

// serveJWKS publishes the assertion's public key; it needs no login.
func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	if h.auth == nil || h.auth.signer == nil {
		return writeJSON(w, http.StatusNotFound, map[string]any{"error": "no identity assertion is configured"})
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on the JWKS", r.Method))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(h.auth.signer.jwks)
	return err
}
