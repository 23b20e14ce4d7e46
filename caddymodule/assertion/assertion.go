// Package assertion signs hubgate's identity assertion: a short-lived JWT
// (ES256) sent with every proxied request, saying who the gateway says the
// visitor is, verifiable by apps with the public keys it publishes as a
// JWKS. The signing key lives in Caddy's storage, so every instance and
// restart signs alike.
package assertion

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
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/hubgate/hubgate/caddymodule/session"
)

// Signer signs assertions with the deployment's ES256 key.
type Signer struct {
	kid    string
	ttl    time.Duration
	key    *ecdsa.PrivateKey
	signer jose.Signer
	jwks   []byte
	cache  *expirable.LRU[string, string]
}

// Claims are the JWT's claims: iss (the hub's origin), sub (the user
// name), aud (the server's key), iat, exp, and these.
type Claims struct {
	jwt.Claims
	Name   string   `json:"name,omitempty"`
	Email  string   `json:"email,omitempty"`
	Groups []string `json:"groups"`
}

// Load loads the signing key from storage at key, creating it under the
// storage lock the first time.
func Load(ctx context.Context, st certmagic.Storage, key string, ttl time.Duration) (*Signer, error) {
	raw, err := session.LoadOrCreate(ctx, st, key, func() ([]byte, error) {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(priv)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	}, func(raw []byte) error {
		_, err := parseKey(raw)
		return err
	})
	if err != nil {
		return nil, err
	}
	priv, err := parseKey(raw)
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
	return &Signer{
		kid:    pub.KeyID,
		ttl:    ttl,
		key:    priv,
		signer: signer,
		jwks:   jwks,
		cache:  expirable.NewLRU[string, string](10000, nil, max(ttl/2, time.Second)),
	}, nil
}

func parseKey(raw []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, errors.New("not PEM")
	}
	priv, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	if priv.Curve != elliptic.P256() {
		return nil, errors.New("not a P-256 key")
	}
	return priv, nil
}

// JWKS is the public key set, as JSON.
func (a *Signer) JWKS() []byte { return a.jwks }

// KeyID is the key's "kid" in the JWKS (its JWK thumbprint).
func (a *Signer) KeyID() string { return a.kid }

// Key is the signing key (for the audit log's signed checkpoints).
func (a *Signer) Key() crypto.Signer { return a.key }

// Sign returns an assertion for s and audience aud, reusing one signed in
// the last half TTL for the same identity and audience.
func (a *Signer) Sign(iss string, s *session.Session, aud string) (string, error) {
	groups := s.Groups
	if groups == nil {
		groups = []string{}
	}
	ck := strings.Join(append([]string{iss, s.User, s.Name, s.Email, aud}, groups...), "\x00")
	if tok, ok := a.cache.Get(ck); ok {
		return tok, nil
	}
	now := time.Now()
	c := Claims{
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
