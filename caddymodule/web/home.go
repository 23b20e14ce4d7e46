package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/spawner"
)

// serveHome shows the user's servers and the images the policy allows.
func (s *Site) serveHome(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	pol := s.o.Policy()
	grant := pol.Grant(sess.User, sess.Groups)
	s.o.Hub.MarkSeen(sess.User)
	var servers []pages.ServerView
	for _, key := range grant.Images {
		img := pol.Images[key]
		if img == nil {
			continue
		}
		v := pages.ServerView{
			Key:         key,
			Description: img.Description,
			URL:         s.ServerURL(r, sess.User, key) + strings.TrimPrefix(img.URL, "/"),
			State:       "stopped",
		}
		rk := hub.Key(sess.User, key)
		if _, ok := s.o.Hub.Peek(rk); ok {
			v.State = "running"
		} else if _, ok := s.o.Hub.Pending(rk); ok {
			v.State = "starting"
		}
		servers = append(servers, v)
	}
	page := pages.HomePage{Frame: s.o.Login.Frame(sess, "Home"), Servers: servers}
	if s.o.ServerHost != nil && s.o.Shares != nil {
		page.Sharing = s.sharingView(r, sess)
	}
	s.homeExtras(r, pol, sess, grant, &page)
	s.homeBackup(r, sess, grant, &page)
	return s.o.Pages.Home(w, page)
}

// checkForm checks a state-changing form post: same-site, the session's
// CSRF token, a bounded body. When it reports false, the refusal has been
// written (or err says why it could not be).
func (s *Site) checkForm(w http.ResponseWriter, r *http.Request, sess *session.Session) (bool, error) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return false, caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("parse form: %w", err))
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" || !s.o.Login.CheckCSRF(sess, r.PostFormValue("csrf")) {
		return false, s.refuse(w, r, sess, http.StatusForbidden, "Refused: the form's CSRF token is missing or wrong, or the request came from another site.", "csrf")
	}
	return true, nil
}

// serveStop lets a user stop one of their own servers from the home page.
func (s *Site) serveStop(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("stop takes POST"))
	}
	if ok, err := s.checkForm(w, r, sess); !ok {
		return err
	}
	if err := s.stop(r, sess.User, r.PostFormValue("server"), sess.User); err != nil && !errors.Is(err, spawner.ErrNotFound) {
		return s.refuse(w, r, sess, http.StatusBadGateway, "Stopping the server failed: "+err.Error(), "stop_failed", zap.Error(err))
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// stop stops one server of user on behalf of by.
func (s *Site) stop(r *http.Request, user, server, by string) error {
	if user == "" || spawner.ValidateServer(server) != nil {
		return fmt.Errorf("stop: %w", spawner.ErrNotFound)
	}
	return s.o.Hub.Stop(r.Context(), user, server, by)
}
