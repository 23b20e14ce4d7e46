package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/caddymodule/tokens"
	"github.com/hubgate/hubgate/policies"
)

// The home page's token forms: make a token (POST /hub/tokens, answered
// with the one page that shows it) and revoke one (POST
// /hub/tokens/revoke). Both are cookie forms with the session's CSRF token;
// a personal token never reaches them (the route table lets tokens reach
// /user/ and /services/ only).

const dateFormat = "2006-01-02 15:04 UTC"

// tokenSection is the home page's token part for sess.
func (s *Site) tokenSection(r *http.Request, pol *policies.Policy, sess *session.Session, grant policies.Grant) pages.TokenSection {
	if s.o.Tokens == nil {
		return pages.TokenSection{}
	}
	sec := pages.TokenSection{On: true, Servers: grant.Images}
	list, err := s.o.Tokens.List(r.Context(), sess.User)
	if err != nil {
		s.o.Logger.Error("listing tokens failed", zap.String("user", sess.User), zap.Error(err))
		sec.Problem = "Your tokens cannot be listed right now."
	}
	now := time.Now()
	for _, rec := range list {
		v := pages.TokenView{ID: rec.ID, Note: rec.Note, Scope: scopeText(rec.Server), Created: rec.Created.UTC().Format(dateFormat),
			Expires: "never", LastUsed: "—", Expired: rec.Expired(now)}
		if !rec.Expires.IsZero() {
			v.Expires = rec.Expires.UTC().Format(dateFormat)
		}
		if t := s.o.Tokens.LastUsed(rec.ID); !t.IsZero() {
			v.LastUsed = t.UTC().Format(dateFormat)
		}
		sec.Tokens = append(sec.Tokens, v)
	}
	return sec
}

func scopeText(server string) string {
	if server == "" {
		return "all servers and the API"
	}
	return "server " + server
}

// serveNewToken makes a token from the home page's form and shows it once.
func (s *Site) serveNewToken(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("tokens are made with POST"))
	}
	if s.o.Tokens == nil {
		return s.o.Pages.Problem(w, r, http.StatusNotFound, s.o.Login.Frame(sess, "Not found"), "Personal tokens are not enabled.", "/", nil)
	}
	if ok, err := s.checkForm(w, r, sess); !ok {
		return err
	}
	pol := s.o.Policy()
	note, server := r.PostFormValue("note"), r.PostFormValue("scope")
	bad := func(msg string) error {
		return s.o.Pages.Problem(w, r, http.StatusBadRequest, s.o.Login.Frame(sess, "Token not made"), msg, "/#tokens", nil)
	}
	if err := tokens.ValidNote(note); err != nil {
		return bad("The token was not made: " + err.Error() + ".")
	}
	if server != "" && !pol.Allowed(sess.User, sess.Groups, server) {
		return bad(fmt.Sprintf("The token was not made: your teams do not allow the server %q.", server))
	}
	days, err := strconv.Atoi(r.PostFormValue("expires"))
	if err != nil || days < 0 || days > 3650 {
		return bad("The token was not made: choose when it expires.")
	}
	tok, rec, err := s.mintToken(r, sess.User, sess.Groups, note, server, time.Duration(days)*24*time.Hour, sess.User+" (home page)")
	if errors.Is(err, tokens.ErrTooMany) {
		return bad("The token was not made: " + err.Error() + ".")
	} else if err != nil {
		s.o.Logger.Error("making a token failed", zap.String("user", sess.User), zap.Error(err))
		return s.o.Pages.Problem(w, r, http.StatusServiceUnavailable, s.o.Login.Frame(sess, "Token not made"), "The token could not be stored. Try again in a minute.", "/#tokens", nil)
	}
	page := pages.NewTokenPage{Frame: s.o.Login.Frame(sess, "New token"), Token: tok, Note: rec.Note, Scope: scopeText(server), Expires: "never"}
	if !rec.Expires.IsZero() {
		page.Expires = rec.Expires.UTC().Format(dateFormat)
	}
	origin := s.o.Login.Origin(r)
	if server != "" {
		page.Example = "curl -H \"Authorization: token $TOKEN\" " + origin + UserPrefix(sess.User, server) + "api/status"
	} else {
		page.Example = "curl -H \"Authorization: token $TOKEN\" " + origin + "/hub/api/user"
	}
	return s.o.Pages.NewToken(w, page)
}

// serveRevokeToken revokes one of the user's tokens from the home page.
func (s *Site) serveRevokeToken(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("tokens are revoked with POST"))
	}
	if s.o.Tokens == nil {
		return s.o.Pages.Problem(w, r, http.StatusNotFound, s.o.Login.Frame(sess, "Not found"), "Personal tokens are not enabled.", "/", nil)
	}
	if ok, err := s.checkForm(w, r, sess); !ok {
		return err
	}
	_, err := s.revokeToken(r, sess.User, r.PostFormValue("id"), sess.User+" (home page)")
	if err != nil && !errors.Is(err, tokens.ErrUnknown) {
		s.o.Logger.Error("revoking a token failed", zap.String("user", sess.User), zap.Error(err))
		return s.o.Pages.Problem(w, r, http.StatusServiceUnavailable, s.o.Login.Frame(sess, "Token not revoked"), "The token could not be revoked. Try again in a minute.", "/#tokens", nil)
	}
	http.Redirect(w, r, "/#tokens", http.StatusSeeOther)
	return nil
}

// homeExtras adds the team services and the token section to the home page.
func (s *Site) homeExtras(r *http.Request, pol *policies.Policy, sess *session.Session, grant policies.Grant, page *pages.HomePage) {
	if s.o.Services != nil {
		for _, name := range grant.Services {
			if svc := pol.Services[name]; svc != nil {
				page.Services = append(page.Services, pages.ServiceLink{Name: name, Description: svc.Description, URL: ServicePrefix(name)})
			}
		}
	}
	page.Tokens = s.tokenSection(r, pol, sess, grant)
}
