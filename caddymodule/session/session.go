package session

import (
	"time"

	"github.com/hubgate/hubgate/internal/randid"
)

// Purposes separate the kinds of sealed values: a value sealed for one
// purpose never opens for another.
const (
	PurposeSession = "hubgate session v1"
	PurposeLogin   = "hubgate login v1"
	// PurposeOAuth seals the pre-login cookie of an OIDC or GitHub login:
	// its state, nonce and PKCE verifier.
	PurposeOAuth = "hubgate oauth v1"
	// PurposeIDToken seals the cookie that keeps the OIDC ID token for the
	// id_token_hint of RP-initiated logout.
	PurposeIDToken = "hubgate id token v1"
	// The GitHub tokens kept in storage are sealed with idp.PurposeToken.
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
	// Provider names how the user logged in: "local", "github" or the name
	// of a configured OIDC provider.
	Provider string `json:"p"`
	// IssuedAt and Expires are Unix seconds.
	IssuedAt int64 `json:"iat"`
	Expires  int64 `json:"exp"`

	// Subject is the provider's stable identifier of the person: the OIDC
	// "sub" claim, or the GitHub numeric user id in decimal. Empty for
	// local accounts.
	Subject string `json:"sub,omitempty"`
	// GitHubID is the GitHub numeric user id of a GitHub login; with the
	// login in User it is what the membership re-check keys on.
	GitHubID int64 `json:"ghid,omitempty"`
	// Name is the display name from the identity provider, used for the
	// git identity; may be empty.
	Name string `json:"n,omitempty"`
	// Email is the verified email address, used for the git identity;
	// empty when the provider gave none that is verified.
	Email string `json:"e,omitempty"`
	// CheckedAt is when the groups were last read from the provider
	// (Unix seconds).
	CheckedAt int64 `json:"chk,omitempty"`
	// Credential ties a local account's session to the password hash it
	// was opened with (a short digest): changing or removing the hash in
	// the policy ends the session on the next request.
	Credential string `json:"cr,omitempty"`
}

// Valid reports whether s names a user and has not expired at now.
func (s *Session) Valid(now time.Time) bool {
	return s.User != "" && s.ID != "" && now.Unix() < s.Expires && s.IssuedAt <= now.Unix()+60
}

// NewID returns a random 128-bit identifier, base64url encoded.
func NewID() string { return randid.ID() }
