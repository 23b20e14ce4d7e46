package login

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
)

// Authenticate returns the valid session of the request, or nil. It is
// called once per request (the site keeps the result in the request's
// context). The steady state costs a cache lookup by the sealed cookie
// value and a map lookup for revocation; the one remote call it can make
// is the first re-check of a GitHub account this instance has not seen
// yet whose groups are older than the re-check interval (after a
// restart), bounded by a timeout.
func (a *Authenticator) Authenticate(r *http.Request) *session.Session {
	value := session.CookieValue(r.Header, session.SessionCookie)
	if value == "" {
		return nil
	}
	// Revocations fail closed: until they were read, no session counts.
	if !a.o.State.revoked.Ready() {
		return nil
	}
	// Opened sessions are cached by their sealed value: the value is
	// authenticated, so the cache cannot be poisoned; expiry and
	// revocation are still checked on every request.
	s, ok := a.sessions.Get(value)
	if !ok {
		if err := a.o.Codec.Open(session.PurposeSession, value, &s); err != nil {
			return nil
		}
		a.sessions.Add(value, s)
	}
	if !a.StillValid(r, &s) {
		return nil
	}
	return &s
}

// StillValid checks an opened session as Authenticate does: expiry,
// revocation (fails closed until the records were read), the local
// account's password unchanged, GitHub still vouching (which may update
// s's groups). Server hosts check the hub session their cookie carries
// with it on every request.
func (a *Authenticator) StillValid(r *http.Request, s *session.Session) bool {
	if !a.o.State.revoked.Ready() {
		return false
	}
	if !s.Valid(time.Now()) {
		return false
	}
	// Logged out (here or on another instance): a copy of the cookie
	// taken before the logout is worthless.
	if a.o.State.revoked.IsRevoked(s.ID) {
		return false
	}
	if s.Provider == providerLocal && !a.localStillValid(s) {
		return false
	}
	// A GitHub session carries the groups of the latest re-check, and
	// ends when GitHub no longer vouches for it.
	if s.GitHubID != 0 && !a.githubSession(r.Context(), s) {
		return false
	}
	return true
}

// mint makes s a new session (its ID, issue and expiry times) and sets
// its cookie; every login ends here. When the groups make the cookie too
// large, only the groups the current policy names are kept.
func (a *Authenticator) mint(w http.ResponseWriter, s *session.Session, pol *policies.Policy, now time.Time) error {
	s.ID = session.NewID()
	s.IssuedAt = now.Unix()
	s.Expires = now.Add(a.cfg.SessionTTL).Unix()
	sealed, err := a.o.Codec.Seal(session.PurposeSession, s)
	if err == nil && len(sealed) > maxCookieValue {
		var kept []string
		for _, g := range s.Groups {
			if pol.Known("\x00", []string{g}) {
				kept = append(kept, g)
			}
		}
		s.Groups = kept
		sealed, err = a.o.Codec.Seal(session.PurposeSession, s)
	}
	if err != nil {
		return err
	}
	if len(sealed) > maxCookieValue {
		return errors.New("session cookie too large")
	}
	session.SetCookie(w, session.SessionCookie, sealed, a.cfg.SessionTTL, http.SameSiteLaxMode)
	return nil
}

// refreshRevocations reads the revocation records and closes the streams
// of sessions newly revoked elsewhere.
func (a *Authenticator) refreshRevocations(ctx context.Context) {
	fresh, err := a.o.State.revoked.Refresh(ctx)
	if err != nil {
		a.o.Logger.Warn("reading session revocations failed", zap.Error(err))
		return
	}
	for sid, rec := range fresh {
		if n := a.o.SessionEnded(sid); n > 0 {
			a.o.Audit.Info("revoked session's streams closed", zap.String("user", rec.User), zap.String("session", session.Tag(sid)), zap.Int("streams_closed", n))
		}
	}
}

// ClientIP is the client's address as Caddy determined it (honouring its
// trusted_proxies).
func ClientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	return r.RemoteAddr
}

// crossSite reports requests that the browser marks as coming from
// another site; they never change state here.
func crossSite(r *http.Request) bool {
	return r.Header.Get("Sec-Fetch-Site") == "cross-site"
}
