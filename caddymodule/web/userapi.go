package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/caddymodule/tokens"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
)

// The user's part of the API, on JupyterHub's paths and in its JSON
// shapes, so clients written for JupyterHub work unchanged:
//
//	GET    /hub/api/user                               who is calling (User model + scopes)
//	GET    /hub/api/users/{name}                       a user's model (the user, or an admin)
//	POST   /hub/api/users/{name}/servers/{server}      start (201 started, 202 starting, 400 already running)
//	DELETE /hub/api/users/{name}/servers/{server}      stop (204; 400 not running)
//	GET    /hub/api/users/{name}/tokens                {"api_tokens": [Token...]}
//	POST   /hub/api/users/{name}/tokens                {"note", "expires_in", "scopes"} -> 201 Token with "token"
//	GET    /hub/api/users/{name}/tokens/{id}           Token
//	DELETE /hub/api/users/{name}/tokens/{id}           204
//
// Callers: a personal token (its owner only; a one-server token only
// identifies itself and starts or stops that server), the user's own
// session (state changes need the X-Hubgate-Csrf header, and never from
// a page under /user/), and admins (an admin's session or an API token of
// the policy) for other users' servers, and to list and revoke, never to
// make, other users' tokens. A personal token never carries its owner's
// admin rights.

// apiCaller is who calls the user API.
type userCaller struct {
	user   string   // the calling user; empty for an API token of the policy
	groups []string // their groups (of the session, or of the token's login)
	admin  bool     // may act on other users
	by     string   // for the audit log
	token  *tokens.Record
	sess   *session.Session
}

// fullScopes are the JupyterHub scopes a token for all of a user's
// servers and their part of the API stands for.
func fullScopes(user string) []string {
	return []string{"access:servers!user=" + user, "read:users!user=" + user, "servers!user=" + user, "tokens!user=" + user}
}

func serverScope(user, server string) string { return "access:servers!server=" + user + "/" + server }

// tokenScopes renders a record's reach as JupyterHub scopes.
func tokenScopes(rec tokens.Record) []string {
	if rec.Server != "" {
		return []string{serverScope(rec.User, rec.Server)}
	}
	return fullScopes(rec.User)
}

// apiError answers like JupyterHub ({"status", "message"}) and like the
// rest of hubgate's API ({"error"}).
func apiError(w http.ResponseWriter, status int, msg string) error {
	return pages.WriteJSON(w, status, map[string]any{"status": status, "message": msg, "error": msg})
}

// serveUserAPI serves the paths above; handled is false for the admin
// API's own paths.
func (s *Site) serveUserAPI(w http.ResponseWriter, r *http.Request) (handled bool, err error) {
	rest := strings.TrimPrefix(r.URL.Path, "/hub/api/")
	parts := strings.Split(rest, "/")
	switch {
	case rest == "user":
	case len(parts) >= 2 && parts[0] == "users" && parts[1] != "" &&
		(len(parts) == 2 || len(parts) == 4 && parts[2] == "servers" && parts[3] != "" ||
			len(parts) == 3 && parts[2] == "tokens" || len(parts) == 4 && parts[2] == "tokens" && parts[3] != ""):
	default:
		return false, nil
	}
	pol := s.o.Policy()
	c, ok, err := s.userAPICaller(w, r, pol)
	if !ok {
		return true, err
	}
	if rest == "user" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return true, methodNotAllowed(w, "GET")
		}
		if c.user == "" {
			return true, apiError(w, http.StatusForbidden, "an API token of the policy is no user; use a personal token or a session")
		}
		m := s.userModel(pol, c.user, c.groups)
		m["scopes"] = []string{"inherit"}
		if c.token != nil {
			m["scopes"] = tokenScopes(*c.token)
		}
		m["session_id"] = nil
		return true, pages.WriteJSON(w, http.StatusOK, m)
	}
	name := policies.NormalizeUser(parts[1])
	if name == "" || (c.user != name && !c.admin) {
		s.denied(r, c.sess, http.StatusForbidden, "other_user", zap.String("target_user", parts[1]))
		return true, apiError(w, http.StatusForbidden, "you may act only on your own servers and tokens")
	}
	groups := c.groups
	if c.user != name {
		groups = nil // an admin acting for another user: membership by name only
	}
	switch {
	case len(parts) == 2:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return true, methodNotAllowed(w, "GET")
		}
		if c.token != nil && c.token.Server != "" {
			return true, apiError(w, http.StatusForbidden, "this token reaches only the server "+c.token.Server)
		}
		if !pol.Known(name, groups) {
			return true, apiError(w, http.StatusNotFound, "no such user in the policy")
		}
		return true, pages.WriteJSON(w, http.StatusOK, s.userModel(pol, name, groups))
	case parts[2] == "servers":
		server := parts[3]
		if c.token != nil && c.token.Server != "" && c.token.Server != server {
			return true, apiError(w, http.StatusForbidden, "this token reaches only the server "+c.token.Server)
		}
		switch r.Method {
		case http.MethodPost:
			return true, s.userAPIStart(w, r, pol, c, name, groups, server)
		case http.MethodDelete:
			err := s.stop(r, name, server, c.by)
			switch {
			case errors.Is(err, spawner.ErrNotFound):
				return true, apiError(w, http.StatusBadRequest, fmt.Sprintf("%s's server %s is not running", name, server))
			case err != nil:
				return true, s.engineTrouble(w, err)
			}
			w.WriteHeader(http.StatusNoContent)
			return true, nil
		}
		return true, methodNotAllowed(w, "POST, DELETE")
	}
	// Tokens.
	if s.o.Tokens == nil {
		return true, apiError(w, http.StatusNotFound, "personal tokens are not enabled")
	}
	if c.token != nil && c.token.Server != "" {
		return true, apiError(w, http.StatusForbidden, "this token reaches only the server "+c.token.Server)
	}
	if len(parts) == 3 {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			list, err := s.o.Tokens.List(r.Context(), name)
			if err != nil {
				return true, s.tokenTrouble(w, err)
			}
			models := make([]map[string]any, 0, len(list))
			for _, rec := range list {
				models = append(models, s.tokenModel(rec))
			}
			return true, pages.WriteJSON(w, http.StatusOK, map[string]any{"api_tokens": models})
		case http.MethodPost:
			if c.user != name {
				return true, apiError(w, http.StatusForbidden, "admins may list and revoke other users' tokens, not make them")
			}
			return true, s.userAPINewToken(w, r, pol, c)
		}
		return true, methodNotAllowed(w, "GET, POST")
	}
	id := parts[3]
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		rec, err := s.o.Tokens.Get(r.Context(), name, id)
		if errors.Is(err, tokens.ErrUnknown) {
			return true, apiError(w, http.StatusNotFound, "no such token")
		} else if err != nil {
			return true, s.tokenTrouble(w, err)
		}
		return true, pages.WriteJSON(w, http.StatusOK, s.tokenModel(rec))
	case http.MethodDelete:
		if _, err := s.revokeToken(r, name, id, c.by); errors.Is(err, tokens.ErrUnknown) {
			return true, apiError(w, http.StatusNotFound, "no such token")
		} else if err != nil {
			return true, s.tokenTrouble(w, err)
		}
		w.WriteHeader(http.StatusNoContent)
		return true, nil
	}
	return true, methodNotAllowed(w, "GET, DELETE")
}

func methodNotAllowed(w http.ResponseWriter, allow string) error {
	w.Header().Set("Allow", allow)
	return apiError(w, http.StatusMethodNotAllowed, "method not allowed; use "+allow)
}

func (s *Site) tokenTrouble(w http.ResponseWriter, err error) error {
	s.o.Logger.Error("token storage failed", zap.Error(err))
	w.Header().Set("Retry-After", "5")
	return apiError(w, http.StatusServiceUnavailable, "tokens cannot be read or written right now")
}

// userAPICaller authenticates a call to the user API: a personal token,
// an API token of the policy, or a session cookie (with the CSRF header
// for state changes, and never from a page under /user/).
func (s *Site) userAPICaller(w http.ResponseWriter, r *http.Request, pol *policies.Policy) (userCaller, bool, error) {
	if cred, ok := personalToken(r); ok {
		if s.o.Tokens == nil {
			return userCaller{}, false, tokenRefused(w, "personal tokens are not enabled")
		}
		sess, r2, err := s.tokenSession(w, r, cred)
		if sess == nil {
			return userCaller{}, false, err
		}
		rec := requestToken(r2)
		return userCaller{user: sess.User, groups: sess.Groups, by: sess.User + " (token " + rec.ID + ")", token: rec}, true, nil
	}
	if r.Header.Get("Authorization") != "" {
		name, ok, err := s.apiCaller(w, r, pol)
		if !ok {
			return userCaller{}, false, err
		}
		return userCaller{admin: true, by: name}, true, nil
	}
	sess := s.o.Login.Authenticate(r)
	if sess == nil {
		return userCaller{}, false, s.apiRefuse(w, r, nil, http.StatusUnauthorized, "login or API token required", "no_session")
	}
	setUserPlaceholders(r, sess)
	if fromUserServer(r) {
		return userCaller{}, false, s.apiRefuse(w, r, sess, http.StatusForbidden, "the API takes a session cookie only from the hub's own pages; scripts use a personal token", "api_from_page")
	}
	if !pol.Known(sess.User, sess.Groups) {
		return userCaller{}, false, s.apiRefuse(w, r, sess, http.StatusForbidden, "your account is not in this hub's policy", "not_in_policy")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" || !s.o.Login.CheckCSRF(sess, r.Header.Get(CSRFHeader)) {
			return userCaller{}, false, s.apiRefuse(w, r, sess, http.StatusForbidden, "missing or wrong "+CSRFHeader+" header", "csrf")
		}
	}
	return userCaller{user: sess.User, groups: sess.Groups, admin: pol.IsAdmin(sess.User), by: sess.User, sess: sess}, true, nil
}

// userModel is JupyterHub's User model for user: their teams as groups,
// their running and starting servers (from the route cache: no engine
// call).
func (s *Site) userModel(pol *policies.Policy, user string, groups []string) map[string]any {
	grant := pol.Grant(user, groups)
	servers := map[string]any{}
	for _, key := range grant.Images {
		k := hub.Key(user, key)
		m := map[string]any{"name": key, "url": UserPrefix(user, key), "progress_url": "", "stopped": false,
			"state": nil, "user_options": map[string]any{}, "started": nil, "last_activity": nil}
		if rt, ok := s.o.Hub.Peek(k); ok {
			m["ready"], m["pending"] = true, nil
			inst := rt.Instance()
			started := inst.Started
			if started.IsZero() {
				started = inst.Created
			}
			m["started"], m["last_activity"] = started.UTC(), rt.LastActivity()
		} else if _, ok := s.o.Hub.Pending(k); ok {
			m["ready"], m["pending"] = false, "spawn"
		} else {
			continue
		}
		servers[key] = m
	}
	roles := []string{"user"}
	if grant.Admin {
		roles = append(roles, "admin")
	}
	var last any
	if t, ok := s.o.Hub.Seen()[user]; ok {
		last = t.UTC()
	}
	return map[string]any{"kind": "user", "name": user, "admin": grant.Admin, "roles": roles, "groups": grant.Teams,
		"server": nil, "pending": nil, "last_activity": last, "servers": servers}
}

// tokenModel is JupyterHub's Token model (without the token itself).
func (s *Site) tokenModel(rec tokens.Record) map[string]any {
	m := map[string]any{"kind": "api_token", "id": rec.ID, "user": rec.User, "note": rec.Note, "roles": []string{},
		"scopes": tokenScopes(rec), "created": rec.Created, "expires_at": nil, "last_activity": nil, "session_id": nil}
	if !rec.Expires.IsZero() {
		m["expires_at"] = rec.Expires
	}
	if t := s.o.Tokens.LastUsed(rec.ID); !t.IsZero() {
		m["last_activity"] = t.UTC()
	}
	return m
}

// userAPIStart starts one of name's servers for caller c.
func (s *Site) userAPIStart(w http.ResponseWriter, r *http.Request, pol *policies.Policy, c userCaller, name string, groups []string, server string) error {
	img := pol.Images[server]
	if img == nil {
		return apiError(w, http.StatusNotFound, fmt.Sprintf("there is no server called %q in the policy", server))
	}
	if !pol.Allowed(name, groups, server) {
		return apiError(w, http.StatusForbidden, fmt.Sprintf("the policy does not allow %s the server %q", name, server))
	}
	key := hub.Key(name, server)
	if _, ok := s.o.Hub.Peek(key); ok {
		return apiError(w, http.StatusBadRequest, fmt.Sprintf("%s's server %s is already running", name, server))
	}
	if _, ok := s.o.Hub.Pending(key); ok {
		return apiError(w, http.StatusBadRequest, fmt.Sprintf("%s's server %s is pending spawn", name, server))
	}
	sess := c.sess
	if sess == nil || sess.User != name {
		sess = &session.Session{ID: "api-start", User: name, Groups: groups, Provider: "api"}
	}
	req := s.startRequest(sess, Decision{Server: server, Image: img}, pol.Grant(name, groups))
	req.By = c.by
	s.o.Audit.Info("start requested", zap.String("user", name), zap.String("server", server), zap.String("by", c.by))
	_, st, err := s.o.Hub.StartAndWait(r.Context(), req, s.o.StartWait)
	switch {
	case r.Context().Err() != nil:
		return nil
	case err != nil:
		return apiError(w, http.StatusBadGateway, "the server did not start: "+err.Error())
	case st != nil:
		w.Header().Set("Retry-After", "2")
		return pages.WriteJSON(w, http.StatusAccepted, s.userModel(pol, name, groups)["servers"].(map[string]any)[server])
	}
	return pages.WriteJSON(w, http.StatusCreated, s.userModel(pol, name, groups)["servers"].(map[string]any)[server])
}

// newTokenBody is JupyterHub's token request.
type newTokenBody struct {
	Note      string   `json:"note"`
	ExpiresIn *float64 `json:"expires_in"`
	Scopes    []string `json:"scopes"`
	Roles     []string `json:"roles"`
}

// parseScopes reads the scopes of a token request: none, ["inherit"] or
// the full set mean all of the user's servers and the API;
// ["access:servers!server=USER/SERVER"] one server.
func parseScopes(pol *policies.Policy, user string, groups []string, scopes []string) (server string, err error) {
	switch {
	case len(scopes) == 0, len(scopes) == 1 && scopes[0] == "inherit":
		return "", nil
	case len(scopes) == 1 && strings.HasPrefix(scopes[0], "access:servers!server="):
		owner, srv, ok := strings.Cut(strings.TrimPrefix(scopes[0], "access:servers!server="), "/")
		if !ok || owner != user || srv == "" {
			return "", fmt.Errorf("scope %q: a token reaches only your own servers (access:servers!server=%s/SERVER)", scopes[0], user)
		}
		if !pol.Allowed(user, groups, srv) {
			return "", fmt.Errorf("scope %q: your teams do not allow the server %q", scopes[0], srv)
		}
		return srv, nil
	}
	sorted := slices.Sorted(slices.Values(scopes))
	if slices.Equal(sorted, fullScopes(user)) {
		return "", nil
	}
	return "", fmt.Errorf("unsupported scopes %q: hubgate tokens reach all your servers and your part of the API (no scopes, or [\"inherit\"]) or one server ([\"access:servers!server=%s/SERVER\"])", scopes, user)
}

// userAPINewToken makes a token for the caller (POST .../tokens).
func (s *Site) userAPINewToken(w http.ResponseWriter, r *http.Request, pol *policies.Policy, c userCaller) error {
	var body newTokenBody
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
	if err != nil {
		return apiError(w, http.StatusBadRequest, "the body is too large or unreadable")
	}
	if len(strings.TrimSpace(string(raw))) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			return apiError(w, http.StatusBadRequest, "body must be a JSON dict or empty: "+err.Error())
		}
	}
	if len(body.Roles) > 0 {
		return apiError(w, http.StatusBadRequest, "roles are not supported; use scopes")
	}
	server, err := parseScopes(pol, c.user, c.groups, body.Scopes)
	if err != nil {
		return apiError(w, http.StatusBadRequest, err.Error())
	}
	var ttl time.Duration
	if body.ExpiresIn != nil {
		e := *body.ExpiresIn
		if e < 0 || math.IsNaN(e) || e > float64(100*365*24*3600) {
			return apiError(w, http.StatusBadRequest, "expires_in must be seconds from now (0 or null: never)")
		}
		ttl = time.Duration(e * float64(time.Second))
	}
	if p := c.token; p != nil && !p.Expires.IsZero() {
		// A token may not outlive the token that made it.
		if ttl == 0 || time.Now().Add(ttl).After(p.Expires) {
			return apiError(w, http.StatusBadRequest, "a token may not outlive the token that makes it (expires "+p.Expires.UTC().Format(time.RFC3339)+")")
		}
	}
	note := body.Note
	if strings.TrimSpace(note) == "" {
		note = "Requested via api"
	}
	if err := tokens.ValidNote(note); err != nil {
		return apiError(w, http.StatusBadRequest, "note: "+err.Error())
	}
	tok, rec, err := s.mintToken(r, c.user, c.groups, note, server, ttl, c.by)
	if errors.Is(err, tokens.ErrTooMany) {
		return apiError(w, http.StatusBadRequest, err.Error())
	} else if err != nil {
		return s.tokenTrouble(w, err)
	}
	m := s.tokenModel(rec)
	m["token"] = tok
	return pages.WriteJSON(w, http.StatusCreated, m)
}

// mintToken makes and audits a token.
func (s *Site) mintToken(r *http.Request, user string, groups []string, note, server string, ttl time.Duration, by string) (string, tokens.Record, error) {
	tok, rec, err := s.o.Tokens.Mint(r.Context(), tokens.Params{User: user, Groups: groups, Note: note, Server: server, TTL: ttl, By: by})
	if err != nil {
		return "", rec, err
	}
	scope := "all servers and the API"
	if server != "" {
		scope = "server " + server
	}
	expires := "never"
	if !rec.Expires.IsZero() {
		expires = rec.Expires.Format(time.RFC3339)
	}
	s.o.Audit.Info("token created", zap.String("user", user), zap.String("token_id", rec.ID), zap.String("note", rec.Note),
		zap.String("scope", scope), zap.String("expires", expires), zap.String("by", by))
	return tok, rec, nil
}

// revokeToken revokes and audits one of user's tokens and closes the
// websockets it holds open here (other instances close theirs within
// twice the cache TTL: CloseRevokedTokenStreams).
func (s *Site) revokeToken(r *http.Request, user, id, by string) (tokens.Record, error) {
	rec, err := s.o.Tokens.Revoke(r.Context(), user, id)
	if err != nil {
		return rec, err
	}
	n := s.o.Hub.Streams().CloseSession(tokenSessionPrefix + id)
	s.o.Audit.Info("token revoked", zap.String("user", user), zap.String("token_id", id), zap.String("note", rec.Note),
		zap.String("by", by), zap.Int("streams_closed", n))
	return rec, nil
}
