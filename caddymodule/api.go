package caddymodule

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
)

// csrfHeader carries the session's CSRF token on state-changing API calls
// made with a session cookie (API tokens need none).
const csrfHeader = "X-Hubgate-Csrf"

// apiCaller authenticates an admin API call: an API token whose SHA-256 the
// policy lists (Authorization: Bearer <token> or token <token>), or an
// admin's session. It returns who is calling, or writes the refusal.
func (h *Handler) apiCaller(w http.ResponseWriter, r *http.Request, pol *policies.Policy) (string, bool, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, tok, _ := strings.Cut(auth, " ")
		if !strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "token") || tok == "" {
			return "", false, h.apiRefuse(w, r, http.StatusUnauthorized, "malformed Authorization header", "bad_token")
		}
		name, ok := pol.LookupAPIToken(strings.TrimSpace(tok))
		if !ok {
			return "", false, h.apiRefuse(w, r, http.StatusUnauthorized, "unknown API token", "bad_token")
		}
		return "token:" + name, true, nil
	}
	s := h.currentSession(r)
	if s == nil {
		return "", false, h.apiRefuse(w, r, http.StatusUnauthorized, "login or API token required", "no_session")
	}
	if !pol.IsAdmin(s.User) {
		return "", false, h.apiRefuse(w, r, http.StatusForbidden, "admins only", "not_admin", zap.String("user", s.User))
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		got := r.Header.Get(csrfHeader)
		if crossSite(r) || got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(h.csrfToken(s))) != 1 {
			return "", false, h.apiRefuse(w, r, http.StatusForbidden, "missing or wrong "+csrfHeader+" header", "csrf", zap.String("user", s.User))
		}
	}
	return s.User, true, nil
}

func (h *Handler) apiRefuse(w http.ResponseWriter, r *http.Request, status int, msg, reason string, fields ...zap.Field) error {
	h.denied(r, status, reason, fields...)
	return writeJSON(w, status, map[string]any{"error": msg})
}

// serveAPI answers the admin JSON API:
//
//	GET    /hub/api/servers                  every server
//	POST   /hub/api/servers/{user}/{server}  start one (202 while starting)
//	DELETE /hub/api/servers/{user}/{server}  stop one (volume kept)
//	GET    /hub/api/users                    every user the gateway knows
func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request) error {
	pol := h.watcher.Current()
	caller, ok, err := h.apiCaller(w, r, pol)
	if !ok {
		return err
	}
	rest := strings.TrimPrefix(r.URL.Path, "/hub/api/")
	switch {
	case rest == "servers" && r.Method == http.MethodGet:
		servers, err := h.listServers(r.Context())
		if err != nil {
			return h.engineTrouble(w, err)
		}
		return writeJSON(w, http.StatusOK, map[string]any{"servers": servers})
	case rest == "users" && r.Method == http.MethodGet:
		servers, err := h.listServers(r.Context())
		if err != nil {
			return h.engineTrouble(w, err)
		}
		return writeJSON(w, http.StatusOK, map[string]any{"users": h.listUsers(pol, servers)})
	case strings.HasPrefix(rest, "servers/"):
		parts := strings.Split(strings.TrimPrefix(rest, "servers/"), "/")
		if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			return writeJSON(w, http.StatusNotFound, map[string]any{"error": "want /hub/api/servers/{user}/{server}"})
		}
		user, server := policies.NormalizeUser(parts[0]), parts[1]
		switch r.Method {
		case http.MethodDelete:
			err := h.stopServer(r.Context(), user, server, caller)
			switch {
			case errors.Is(err, spawner.ErrNotFound):
				return writeJSON(w, http.StatusNotFound, map[string]any{"error": "no such server"})
			case err != nil:
				return h.engineTrouble(w, err)
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		case http.MethodPost:
			return h.apiStart(w, r, pol, user, server, caller)
		}
	}
	w.Header().Set("Allow", "GET, POST, DELETE")
	return writeJSON(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("no API endpoint %s %s", r.Method, r.URL.Path)})
}

// apiStart starts a user's server on an admin's behalf; the user's grant
// is computed from policy membership (IdP groups are known only from the
// user's own login).
func (h *Handler) apiStart(w http.ResponseWriter, r *http.Request, pol *policies.Policy, user, server, caller string) error {
	img := pol.Images[server]
	if img == nil {
		return writeJSON(w, http.StatusNotFound, map[string]any{"error": "no such image in the policy"})
	}
	if !pol.Allowed(user, nil, server) {
		return writeJSON(w, http.StatusForbidden, map[string]any{"error": "the policy does not allow this user that server"})
	}
	key := routeKey(user, server)
	if _, ok := h.hub.lookup(key); ok {
		return writeJSON(w, http.StatusOK, map[string]any{"status": "running"})
	}
	s := &session.Session{ID: "admin-start", User: user, Provider: "api"}
	grant := pol.Grant(user, nil)
	st := h.hub.begin(key, time.Duration(h.StartTimeout), func(ctx context.Context) (*route, error) {
		return h.spawn(ctx, s, server, img, grant)
	})
	h.audit.Info("start requested", zap.String("user", user), zap.String("server", server), zap.String("by", caller))
	select {
	case <-st.done:
		if st.err != nil {
			h.hub.dismiss(key, st)
			return writeJSON(w, http.StatusBadGateway, map[string]any{"status": "failed", "error": st.err.Error()})
		}
		return writeJSON(w, http.StatusOK, map[string]any{"status": "running"})
	case <-time.After(time.Duration(h.StartWait)):
		return writeJSON(w, http.StatusAccepted, map[string]any{"status": "starting", "queue_position": h.hub.position(st)})
	case <-r.Context().Done():
		return nil
	}
}

func (h *Handler) engineTrouble(w http.ResponseWriter, err error) error {
	h.logger.Error("engine call failed", zap.Error(err))
	w.Header().Set("Retry-After", "10")
	return writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "the container engine failed: " + err.Error()})
}
