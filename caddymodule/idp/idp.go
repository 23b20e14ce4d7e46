// Package idp holds hubgate's identity providers: any OpenID Connect
// provider (discovery, authorization code flow with state, nonce and PKCE,
// ID token verification) and GitHub OAuth (user, verified email, org and
// team membership, token refresh). It knows nothing of Caddy or of the
// HTTP handler: it turns an authorization code into an Identity, and
// re-reads a GitHub user's memberships on demand.
//
// Every call to a provider takes a context and is bounded by the
// provider's timeout; no secret or token is ever put in an error message.
package idp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/hubgate/hubgate/internal/randid"
)

// Provider kinds.
const (
	KindOIDC   = "oidc"
	KindGitHub = "github"
)

// DefaultTimeout bounds every call to a provider when none is configured.
const DefaultTimeout = 10 * time.Second

// Identity is what a provider vouches for after a successful login.
type Identity struct {
	// Provider is the configured name of the provider ("github", or the
	// name given to an OIDC provider).
	Provider string
	// Kind is KindOIDC or KindGitHub.
	Kind string
	// Subject is the provider's stable identifier of the person: the OIDC
	// "sub" claim, or the GitHub numeric user id in decimal.
	Subject string
	// User is the canonical hubgate user name (lower-case).
	User string
	// Name is the display name; may be empty.
	Name string
	// Email is a verified email address, or empty.
	Email string
	// Groups are policy groups, already prefixed ("oidc:researchers",
	// "github:org", "github:org/team").
	Groups []string
	// GitHubID is the numeric GitHub user id (GitHub logins only).
	GitHubID int64
	// IDToken is the raw ID token (OIDC only), kept for the id_token_hint
	// of RP-initiated logout.
	IDToken string
	// Token is the GitHub user token (GitHub logins only).
	Token *oauth2.Token
}

// Flow is the per-login secret material that the handler keeps in the
// browser's pre-login cookie between the redirect to the provider and the
// callback.
type Flow struct {
	// State is the OAuth state parameter.
	State string
	// Nonce is the OIDC nonce the ID token must carry.
	Nonce string
	// Verifier is the PKCE code verifier; its S256 challenge is sent
	// with the authorization request.
	Verifier string
	// RedirectURI is the callback URL given to the provider.
	RedirectURI string
}

// NewFlow returns a flow with fresh random state, nonce and verifier.
func NewFlow(redirectURI string) Flow {
	return Flow{
		State:       randid.New(24),
		Nonce:       randid.New(24),
		Verifier:    oauth2.GenerateVerifier(),
		RedirectURI: redirectURI,
	}
}

// Provider is one way to log in.
type Provider interface {
	// Name is the configured name, used in URLs and sessions.
	Name() string
	// Kind is KindOIDC or KindGitHub.
	Kind() string
	// Label is the text of the login button.
	Label() string
	// AuthCodeURL returns where to send the browser to log in. For OIDC
	// it may run discovery first.
	AuthCodeURL(ctx context.Context, f Flow) (string, error)
	// Exchange redeems the authorization code (with the flow's PKCE
	// verifier) and returns the verified identity.
	Exchange(ctx context.Context, code string, f Flow) (*Identity, error)
}

// LoginError is a login refused for a reason that can be audited (Reason,
// a short snake_case word) and shown to the person (Message). Err, if set,
// is the underlying cause for the server's log; it never holds a secret.
type LoginError struct {
	Reason  string
	Message string
	Err     error
}

func (e *LoginError) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

func (e *LoginError) Unwrap() error { return e.Err }

func refuse(reason, message string, err error) *LoginError {
	return &LoginError{Reason: reason, Message: message, Err: err}
}

// ErrUnavailable marks failures to reach the provider (network errors,
// timeouts, 5xx answers), as opposed to refusals.
var ErrUnavailable = errors.New("identity provider unavailable")

// Reason returns the audit reason of err: the LoginError's reason, or
// "idp_unavailable" / "idp_error".
func Reason(err error) string {
	var le *LoginError
	if errors.As(err, &le) {
		return le.Reason
	}
	if errors.Is(err, ErrUnavailable) {
		return "idp_unavailable"
	}
	return "idp_error"
}

// NewHTTPClient returns the client used for provider calls: bounded by
// timeout, not following redirects to other hosts silently, and without
// an environment proxy surprise for loopback test providers.
func NewHTTPClient(timeout time.Duration) *http.Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = timeout
	return &http.Client{Timeout: timeout, Transport: tr}
}

// CheckProviderURL checks that a provider URL is absolute https, or http
// only on a loopback host (development and tests).
func CheckProviderURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%s %q must be an absolute https URL", field, raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s %q must not carry user info, a query or a fragment", field, raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%s %q must use https (http is allowed only on a loopback address)", field, raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SanitizeEmail turns an email address into a user name: lower-cased,
// and only if it is a plain address (letters, digits and ._%+- before a
// single @, a domain of letters, digits, dots and dashes); otherwise "".
func SanitizeEmail(email string) string {
	e := strings.ToLower(strings.TrimSpace(email))
	local, domain, ok := strings.Cut(e, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || len(e) > 64 {
		return ""
	}
	for _, r := range local {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("._%+-", r)) {
			return ""
		}
	}
	for _, r := range domain {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
			return ""
		}
	}
	if strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || !strings.Contains(domain, ".") {
		return ""
	}
	return e
}

// sanitizeText keeps a provider-supplied display string printable and
// short, for the git identity.
func sanitizeText(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError || r == '<' || r == '>' {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max])
	}
	return s
}
