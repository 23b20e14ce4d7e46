package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/caddymodule/tokens"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
)

// CSRFHeader carries the session's CSRF token on state-changing API calls
// made with a session cookie (API tokens need none).
const CSRFHeader = "X-Hubgate-Csrf"

// apiCaller authenticates an admin API call: an API token whose SHA-256 the
// policy lists (Authorization: Bearer <token> or token <token>), or an
// admin's session. It returns who is calling, or writes the refusal.
func (s *Site) apiCaller(w http.ResponseWriter, r *http.Request, pol *policies.Policy) (string, bool, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, tok, _ := strings.Cut(auth, " ")
		if !strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "token") || tok == "" {
			return "", false, s.apiRefuse(w, r, nil, http.StatusUnauthorized, "malformed Authorization header", "bad_token")
		}
		name, ok := pol.LookupAPIToken(strings.TrimSpace(tok))
		if !ok && tokens.IsToken(strings.TrimSpace(tok)) {
			return "", false, s.apiRefuse(w, r, nil, http.StatusForbidden, "a personal token reaches only its owner's part of the API (/hub/api/user, /hub/api/users/{name}/...)", "token_scope")
		}
		if !ok {
			return "", false, s.apiRefuse(w, r, nil, http.StatusUnauthorized, "unknown API token", "bad_token")
		}
		return "token:" + name, true, nil
	}
	sess := s.o.Login.Authenticate(r)
	if sess == nil {
		return "", false, s.apiRefuse(w, r, nil, http.StatusUnauthorized, "login or API token required", "no_session")
	}
	setUserPlaceholders(r, sess)
	if fromUserServer(r) {
		return "", false, s.apiRefuse(w, r, sess, http.StatusForbidden, "the API takes a session cookie only from the hub's own pages; scripts use an API token", "api_from_page")
	}
	if !pol.IsAdmin(sess.User) {
		return "", false, s.apiRefuse(w, r, sess, http.StatusForbidden, "admins only", "not_admin")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" || !s.o.Login.CheckCSRF(sess, r.Header.Get(CSRFHeader)) {
			return "", false, s.apiRefuse(w, r, sess, http.StatusForbidden, "missing or wrong "+CSRFHeader+" header", "csrf")
		}
	}
	return sess.User, true, nil
}

func (s *Site) apiRefuse(w http.ResponseWriter, r *http.Request, sess *session.Session, status int, msg, reason string) error {
	s.denied(r, sess, status, reason)
	return pages.WriteJSON(w, status, map[string]any{"error": msg})
}

// serveAPI answers the admin JSON API:
//
//	GET    /hub/api/servers                  every server
//	POST   /hub/api/servers/{user}/{server}  start one (202 while starting)
//	DELETE /hub/api/servers/{user}/{server}  stop one (volume kept)
//	GET    /hub/api/users                    every user the gateway knows
func (s *Site) serveAPI(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
	if handled, err := s.serveUserAPI(w, r); handled {
		return err // the user's part, on JupyterHub's paths (userapi.go)
	}
	pol := s.o.Policy()
	caller, ok, err := s.apiCaller(w, r, pol)
	if !ok {
		return err
	}
	rest := strings.TrimPrefix(r.URL.Path, "/hub/api/")
	switch {
	case rest == "servers" && r.Method == http.MethodGet:
		servers, err := s.listServers(r.Context())
		if err != nil {
			return s.engineTrouble(w, err)
		}
		return pages.WriteJSON(w, http.StatusOK, map[string]any{"servers": servers})
	case rest == "users" && r.Method == http.MethodGet:
		servers, err := s.listServers(r.Context())
		if err != nil {
			return s.engineTrouble(w, err)
		}
		return pages.WriteJSON(w, http.StatusOK, map[string]any{"users": s.listUsers(pol, servers)})
	case strings.HasPrefix(rest, "servers/"):
		parts := strings.Split(strings.TrimPrefix(rest, "servers/"), "/")
		if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			return pages.WriteJSON(w, http.StatusNotFound, map[string]any{"error": "want /hub/api/servers/{user}/{server}"})
		}
		user, server := policies.NormalizeUser(parts[0]), parts[1]
		switch r.Method {
		case http.MethodDelete:
			err := s.stop(r, user, server, caller)
			switch {
			case errors.Is(err, spawner.ErrNotFound):
				return pages.WriteJSON(w, http.StatusNotFound, map[string]any{"error": "no such server"})
			case err != nil:
				return s.engineTrouble(w, err)
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		case http.MethodPost:
			return s.apiStart(w, r, pol, user, server, caller)
		}
	}
	w.Header().Set("Allow", "GET, POST, DELETE")
	return pages.WriteJSON(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("no API endpoint %s %s", r.Method, r.URL.Path)})
}

// apiStart starts a user's server on an admin's behalf; the user's grant
// is computed from policy membership (IdP groups are known only from the
// user's own login).
func (s *Site) apiStart(w http.ResponseWriter, r *http.Request, pol *policies.Policy, user, server, caller string) error {
	img := pol.Images[server]
	if img == nil {
		return pages.WriteJSON(w, http.StatusNotFound, map[string]any{"error": "no such image in the policy"})
	}
	if !pol.Allowed(user, nil, server) {
		return pages.WriteJSON(w, http.StatusForbidden, map[string]any{"error": "the policy does not allow this user that server"})
	}
	if _, ok := s.o.Hub.Lookup(hub.Key(user, server)); ok {
		return pages.WriteJSON(w, http.StatusOK, map[string]any{"status": "running"})
	}
	sess := &session.Session{ID: "admin-start", User: user, Provider: "api"}
	req := s.startRequest(sess, Decision{Server: server, Image: img}, pol.Grant(user, nil))
	req.By = caller
	s.o.Audit.Info("start requested", zap.String("user", user), zap.String("server", server), zap.String("by", caller))
	_, st, err := s.o.Hub.StartAndWait(r.Context(), req, s.o.StartWait)
	switch {
	case r.Context().Err() != nil:
		return nil
	case err != nil:
		return pages.WriteJSON(w, http.StatusBadGateway, map[string]any{"status": "failed", "error": err.Error()})
	case st != nil:
		return pages.WriteJSON(w, http.StatusAccepted, map[string]any{"status": "starting", "queue_position": s.o.Hub.Position(st)})
	}
	return pages.WriteJSON(w, http.StatusOK, map[string]any{"status": "running"})
}

func (s *Site) engineTrouble(w http.ResponseWriter, err error) error {
	s.o.Logger.Error("engine call failed", zap.Error(err))
	w.Header().Set("Retry-After", "10")
	return pages.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "the container engine failed: " + err.Error()})
}

// fromUserServer reports a browser request made by a script that may be
// running in a user's server, which shares the hub's origin: one the
// browser marks as not same-origin, or with no Referer or one under
// /user/. Non-browser clients (no Sec-Fetch-Site) are judged by their
// credentials alone.
func fromUserServer(r *http.Request) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	if site == "" {
		return false
	}
	if site != "same-origin" {
		return true
	}
	ref, err := url.Parse(r.Header.Get("Referer"))
	return r.Header.Get("Referer") == "" || err != nil || strings.HasPrefix(ref.Path, "/user/")
}
