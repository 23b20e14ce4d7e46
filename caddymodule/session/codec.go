// Package session seals and opens hubgate's cookies: small JSON values
// encrypted and authenticated with AES-256-GCM under a key that lives in
// Caddy's storage, so every gateway instance and every restart shares it.
package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrInvalid is returned by Open for any value that was not sealed by this
// codec for the same purpose: tampered, truncated, forged or garbage input.
var ErrInvalid = errors.New("invalid or tampered value")

// MaxSealedLen bounds the size of a sealed value that Open accepts, so a
// hostile client cannot make the gateway decode megabytes of cookie.
const MaxSealedLen = 8192

// Codec seals values for a purpose (the AEAD's additional data) so a value
// sealed as one kind of cookie can never be replayed as another kind.
type Codec struct {
	aead   cipher.AEAD
	macKey []byte
}

// NewCodec derives the encryption and MAC keys from a 32-byte master key.
func NewCodec(master []byte) (*Codec, error) {
	if len(master) != 32 {
		return nil, fmt.Errorf("master key must be 32 bytes, got %d", len(master))
	}
	encKey, err := hkdf.Key(sha256.New, master, nil, "hubgate cookie aead v1", 32)
	if err != nil {
		return nil, fmt.Errorf("derive cookie key: %w", err)
	}
	macKey, err := hkdf.Key(sha256.New, master, nil, "hubgate mac v1", 32)
	if err != nil {
		return nil, fmt.Errorf("derive mac key: %w", err)
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, fmt.Errorf("new cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("new gcm: %w", err)
	}
	return &Codec{aead: aead, macKey: macKey}, nil
}

// Seal encodes v as JSON, encrypts and authenticates it for purpose and
// returns a URL- and cookie-safe string.
func (c *Codec) Seal(purpose string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", purpose, err)
	}
	ns := c.aead.NonceSize()
	buf := make([]byte, ns, ns+len(plain)+c.aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("nonce for %s: %w", purpose, err)
	}
	sealed := c.aead.Seal(buf, buf[:ns], plain, []byte(purpose))
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open reverses Seal. Any failure is reported as ErrInvalid without detail,
// so callers cannot leak why a forged value was refused.
func (c *Codec) Open(purpose, sealed string, v any) error {
	if sealed == "" || len(sealed) > MaxSealedLen {
		return ErrInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil {
		return ErrInvalid
	}
	ns := c.aead.NonceSize()
	if len(raw) < ns+c.aead.Overhead() {
		return ErrInvalid
	}
	plain, err := c.aead.Open(nil, raw[:ns], raw[ns:], []byte(purpose))
	if err != nil {
		return ErrInvalid
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return ErrInvalid
	}
	return nil
}

// MAC returns a keyed SHA-256 HMAC of parts joined with NUL bytes, for
// values that must be derived rather than stored (CSRF tokens, container
// secrets).
func (c *Codec) MAC(parts ...string) []byte {
	m := hmac.New(sha256.New, c.macKey)
	for i, p := range parts {
		if i > 0 {
			m.Write([]byte{0})
		}
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}
