package session

import (
	"crypto/rand"
	"encoding/base64"
	"time"
)

// Purposes separate the kinds of sealed values.
const (
	PurposeSession = "hubgate session v1"
	PurposeLogin   = "hubgate login v1"
)

// Session is what the session cookie holds. It is small on purpose: it
// travels with every request.
type Session struct {
	// ID is a random identifier used to derive the CSRF token and, later,
	// to revoke the session.
	ID string `json:"sid"`
	// User is the canonical user name.
	User string `json:"u"`
	// Groups are the identity provider groups, already prefixed
	// ("github:org/team", "oidc:researchers").
	Groups []string `json:"g,omitempty"`
	// Provider names how the user logged in ("local", ...).
	Provider string `json:"p"`
	// IssuedAt and Expires are Unix seconds.
	IssuedAt int64 `json:"iat"`
	Expires  int64 `json:"exp"`
}

// Valid reports whether s names a user and has not expired at now.
func (s *Session) Valid(now time.Time) bool {
	return s.User != "" && s.ID != "" && now.Unix() < s.Expires && s.IssuedAt <= now.Unix()+60
}

// NewID returns a random 128-bit identifier, base64url encoded.
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}
