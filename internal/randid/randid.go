// Package randid makes the random identifiers hubgate needs (session IDs,
// CSRF values, OAuth state and nonces, container nonces): one source, so
// every one of them has the same strength and encoding.
package randid

import (
	"crypto/rand"
	"encoding/base64"
)

// New returns n random bytes, base64url-encoded without padding. The
// alphabet ([A-Za-z0-9_-]) is safe in URLs, cookies, Docker labels and
// Kubernetes label values.
func New(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// ID returns a random 128-bit identifier.
func ID() string { return New(16) }
