package web

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/login"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/caddymodule/tokens"
)

// Personal API tokens (caddymodule/tokens) authenticate a request to a
// user's server (/user/), a team service (/services/) and the user's part
// of the API; never a hub page. A request that carries one is a token
// request: its cookies are not looked at, so a token cannot lend a
// cookie-authenticated form its authority, nor a cookie a token's.

// tokenUseAudit is how often a token's use is written to the audit log
// (the first use per token per interval, per instance).
const tokenUseAudit = 10 * time.Minute

// tokenSessionPrefix marks the session ID of a token request; open
// websockets of a token are closed by it when the token is revoked.
const tokenSessionPrefix = "token:"

// neverExpires stands in for "no expiry" where a time is needed.
const neverExpires = 10 * 365 * 24 * time.Hour

type tokenKey struct{}

// requestToken returns the record of the personal token that
// authenticated r, or nil for a cookie request.
func requestToken(r *http.Request) *tokens.Record {
	rec, _ := r.Context().Value(tokenKey{}).(*tokens.Record)
	return rec
}

// personalToken returns the personal token in r's Authorization header
// ("token <t>" or "Bearer <t>", any case), if there is one.
func personalToken(r *http.Request) (string, bool) {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || (!strings.EqualFold(scheme, "token") && !strings.EqualFold(scheme, "bearer")) {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, tokens.IsToken(cred)
}

// acceptsToken says which session routes a personal token may reach.
func acceptsToken(path string) bool {
	return strings.HasPrefix(path, "/user/") || strings.HasPrefix(path, "/services/")
}

// tokenSession checks a personal token and returns the session it stands
// for, with the request carrying its record; nil after writing the
// refusal (401 for a bad, expired or revoked token, 403 for a user the
// policy no longer knows, 503 when the storage cannot be read).
func (s *Site) tokenSession(w http.ResponseWriter, r *http.Request, cred string) (*session.Session, *http.Request, error) {
	rec, err := s.o.Tokens.Check(r.Context(), cred)
	switch {
	case errors.Is(err, tokens.ErrExpired):
		s.o.Audit.Warn("token refused", zap.String("user", rec.User), zap.String("token_id", rec.ID), zap.String("reason", "expired"), zap.String("path", r.URL.Path))
		Denied("token_expired")
		return nil, r, tokenRefused(w, "the token has expired; make a new one on your home page")
	case errors.Is(err, tokens.ErrUnknown), errors.Is(err, tokens.ErrMalformed):
		s.denied(r, nil, http.StatusUnauthorized, "bad_token", zap.String("remote_ip", login.ClientIP(r)))
		return nil, r, tokenRefused(w, "unknown or revoked token")
	case err != nil:
		s.o.Logger.Error("checking a personal token failed", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		return nil, r, pages.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "tokens cannot be checked right now"})
	}
	sess := tokenAsSession(rec)
	setUserPlaceholders(r, sess)
	if !s.o.Policy().Known(rec.User, rec.Groups) {
		s.denied(r, sess, http.StatusForbidden, "not_in_policy", zap.String("token_id", rec.ID))
		return nil, r, pages.WriteJSON(w, http.StatusForbidden, map[string]any{"error": "the token's owner is not in this hub's policy"})
	}
	if first, _ := s.o.Tokens.Used(rec.ID, tokenUseAudit); first {
		s.o.Audit.Info("token used", zap.String("user", rec.User), zap.String("token_id", rec.ID), zap.String("note", rec.Note),
			zap.String("path", r.URL.Path), zap.String("remote_ip", login.ClientIP(r)))
	}
	return sess, r.WithContext(context.WithValue(r.Context(), tokenKey{}, &rec)), nil
}

// tokenAsSession is the session a token request stands for: its owner
// and the groups of the login the token was made in; it ends with the
// token.
func tokenAsSession(rec tokens.Record) *session.Session {
	exp := rec.Expires
	if exp.IsZero() {
		exp = time.Now().Add(neverExpires)
	}
	return &session.Session{ID: tokenSessionPrefix + rec.ID, User: rec.User, Groups: rec.Groups, Provider: "token",
		IssuedAt: rec.Created.Unix(), Expires: exp.Unix()}
}

func tokenRefused(w http.ResponseWriter, msg string) error {
	w.Header().Set("WWW-Authenticate", `token realm="hubgate"`)
	return pages.WriteJSON(w, http.StatusUnauthorized, map[string]any{"error": msg})
}

// tokenReaches reports whether the request's token (if any) may reach the
// server key (a user's server) or, with server "", anything of its owner.
func tokenReaches(r *http.Request, server string) bool {
	rec := requestToken(r)
	return rec == nil || rec.Server == "" || rec.Server == server
}

// CloseRevokedTokenStreams ends the open websockets of tokens revoked on
// another instance (or expired): it is run every CacheTTL by the glue, so
// a revocation anywhere closes a token's websockets within twice the
// revocation bound.
func (s *Site) CloseRevokedTokenStreams(ctx context.Context) int {
	if s.o.Tokens == nil {
		return 0
	}
	ids := map[string]bool{}
	s.o.Hub.Streams().CloseIf(func(st *hub.Stream) bool {
		if id, ok := strings.CutPrefix(st.SessionID, tokenSessionPrefix); ok {
			ids[id] = true
		}
		return false
	})
	n := 0
	for id := range ids {
		if !s.o.Tokens.Valid(ctx, id) {
			n += s.o.Hub.Streams().CloseSession(tokenSessionPrefix + id)
		}
	}
	return n
}
