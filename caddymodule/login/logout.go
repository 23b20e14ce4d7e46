package login

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/idp"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/session"
)

// ServeLogout ends the session. GET shows a confirmation form (a link
// someone else planted cannot log you out); POST with the CSRF token logs
// out: the session is revoked on every gateway instance (a record in
// Caddy's storage), its websockets are closed, and a session from an OIDC
// provider that offers RP-initiated logout continues at its
// end_session_endpoint, which comes back to /.
func (a *Authenticator) ServeLogout(w http.ResponseWriter, r *http.Request) error {
	s := a.Authenticate(r)
	if s == nil {
		session.ClearCookie(w, session.SessionCookie)
		session.ClearCookie(w, session.IDTokenCookie)
		http.Redirect(w, r, "/hub/login", http.StatusSeeOther)
		return nil
	}
	oidcProvider, _ := a.byName[s.Provider].(*idp.OIDC)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		var targets []string
		if oidcProvider != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			if o := oidcProvider.EndSessionOrigin(ctx); o != "" {
				targets = append(targets, o)
			}
			cancel()
		}
		return a.o.Pages.Logout(w, pages.LogoutPage{Frame: a.Frame(s, "Log out")}, targets...)
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if crossSite(r) || !a.CheckCSRF(s, r.PostFormValue("csrf")) {
			return a.refuse(w, r, http.StatusForbidden, "logout refused: missing or wrong CSRF token", "csrf")
		}
		session.ClearCookie(w, session.SessionCookie)
		session.ClearCookie(w, session.IDTokenCookie)
		a.Revoke(r.Context(), s)
		target := "/hub/login"
		if oidcProvider != nil {
			var hint idTokenHint
			if c, err := r.Cookie(session.IDTokenCookie); err != nil || a.o.Codec.Open(session.PurposeIDToken, c.Value, &hint) != nil || hint.SID != s.ID {
				hint = idTokenHint{}
			}
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			if u := oidcProvider.EndSessionURL(ctx, hint.Raw, a.Origin(r)+"/"); u != "" {
				target = u
			}
			cancel()
		}
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, target, http.StatusSeeOther)
		return nil
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on logout", r.Method))
	}
}

// Revoke ends s everywhere: at once on this instance (its websockets
// closed), and through the record in Caddy's storage on every other
// instance sharing it.
func (a *Authenticator) Revoke(ctx context.Context, s *session.Session) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	fields := []zap.Field{zap.String("user", s.User), zap.String("provider", s.Provider), zap.String("session", session.Tag(s.ID))}
	if err := a.o.State.revoked.Revoke(ctx, s); err != nil {
		a.o.Audit.Error("session revocation not stored yet; retrying, other instances may accept it until then", append(fields, zap.Error(err))...)
	} else {
		a.o.Audit.Info("session revoked", append(fields, zap.Time("until", time.Unix(s.Expires, 0)))...)
	}
	closed := a.o.SessionEnded(s.ID)
	a.o.Audit.Info("logout", append(fields, zap.Int("streams_closed", closed))...)
}

// Frame is the page header for s.
func (a *Authenticator) Frame(s *session.Session, title string) pages.Frame {
	f := pages.Frame{Title: title}
	if s != nil {
		f.User, f.CSRF, f.Admin = s.User, a.CSRF(s), a.o.Policy().IsAdmin(s.User)
	}
	return f
}
