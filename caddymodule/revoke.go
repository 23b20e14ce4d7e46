package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/session"
)

// revocationRefresh is how often every instance re-reads the revocation
// records from Caddy's storage, so a logout on one gateway is honoured by
// all of them within this time (at once on the instance that logged out).
const revocationRefresh = 2 * time.Second

// oauthStateTTL is how long a login started at an identity provider may
// take; its state is remembered as used for a little longer.
const oauthStateTTL = 10 * time.Minute

// authState is the login state that must survive config reloads; it
// lives in the hub.
type authState struct {
	// revoked maps revoked session IDs to their expiry (Unix seconds).
	// The request path only does a map lookup here.
	mu      sync.RWMutex
	revoked map[string]int64
	loaded  bool

	// states remembers OAuth states already used, so a callback cannot
	// be replayed even with a copy of the pre-login cookie.
	states *expirable.LRU[string, struct{}]

	// members are the GitHub users seen recently, whose memberships are
	// re-checked on an interval.
	ghMu    sync.RWMutex
	members map[int64]*ghMember
}

func newAuthState() *authState {
	return &authState{
		revoked: make(map[string]int64),
		states:  expirable.NewLRU[string, struct{}](100000, nil, oauthStateTTL+time.Minute),
		members: make(map[int64]*ghMember),
	}
}

// isRevoked reports whether the session was logged out.
func (a *authState) isRevoked(sid string) bool {
	a.mu.RLock()
	_, ok := a.revoked[sid]
	a.mu.RUnlock()
	return ok
}

func (a *authState) addRevoked(sid string, exp int64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.revoked[sid]; ok {
		return false
	}
	a.revoked[sid] = exp
	return true
}

// consumeState marks an OAuth state used; it reports false if it was
// already used.
func (a *authState) consumeState(state string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.states.Contains(state) {
		return false
	}
	a.states.Add(state, struct{}{})
	return true
}

// revocationRecord is what storage keeps per revoked session.
type revocationRecord struct {
	Expires int64  `json:"exp"`
	User    string `json:"user"`
	At      int64  `json:"at"`
}

func (h *Handler) revokedPrefix() string { return "hubgate/" + h.Name + "/revoked" }

// sessionTag identifies a session in logs without giving its ID away.
func sessionTag(sid string) string {
	sum := sha256.Sum256([]byte("hubgate session tag\x00" + sid))
	return hex.EncodeToString(sum[:6])
}

// revokeSession ends s everywhere: at once on this instance, and through
// the record in Caddy's storage on every other instance sharing it.
func (h *Handler) revokeSession(ctx context.Context, s *session.Session) {
	h.hub.auth.addRevoked(s.ID, s.Expires)
	rec, _ := json.Marshal(revocationRecord{Expires: s.Expires, User: s.User, At: time.Now().Unix()})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	key := h.revokedPrefix() + "/" + s.ID
	fields := []zap.Field{zap.String("user", s.User), zap.String("session", sessionTag(s.ID)), zap.Time("until", time.Unix(s.Expires, 0))}
	if err := h.ctx.Storage().Store(ctx, key, rec); err != nil {
		h.audit.Error("session revocation not stored; other instances may accept it until it expires", append(fields, zap.Error(err))...)
		return
	}
	h.audit.Info("session revoked", fields...)
}

// loadRevocations reads the revocation records from storage into the
// in-memory set, closes the websockets of sessions newly revoked there,
// forgets expired records and deletes them from storage.
func (h *Handler) loadRevocations(ctx context.Context) error {
	st := h.ctx.Storage()
	keys, err := st.List(ctx, h.revokedPrefix(), false)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if err != nil {
		return err
	}
	now := time.Now().Unix()
	a := h.hub.auth
	for _, key := range keys {
		sid := path.Base(key)
		a.mu.RLock()
		_, known := a.revoked[sid]
		a.mu.RUnlock()
		if known {
			continue
		}
		raw, err := st.Load(ctx, key)
		if err != nil {
			continue
		}
		var rec revocationRecord
		if json.Unmarshal(raw, &rec) != nil || rec.Expires < now {
			_ = st.Delete(ctx, key)
			continue
		}
		if a.addRevoked(sid, rec.Expires) {
			if n := h.hub.streams.closeSession(sid); n > 0 {
				h.audit.Info("revoked session's streams closed", zap.String("user", rec.User), zap.String("session", sessionTag(sid)), zap.Int("streams_closed", n))
			}
		}
	}
	a.mu.Lock()
	for sid, exp := range a.revoked {
		if exp < now {
			delete(a.revoked, sid)
		}
	}
	a.loaded = true
	a.mu.Unlock()
	return nil
}

// revocationLoop keeps the revocation set current until the config is
// unloaded.
func (h *Handler) revocationLoop(ctx context.Context) {
	t := time.NewTicker(revocationRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := h.loadRevocations(lctx); err != nil {
			h.logger.Warn("reading session revocations failed", zap.Error(err))
		}
		cancel()
	}
}
