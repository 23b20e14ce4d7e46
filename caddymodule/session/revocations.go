package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// Revocations is the set of logged-out sessions, kept in memory for the
// request path (a map lookup) and in Caddy's storage, one record per
// session under Prefix, so a logout on one gateway instance is honoured by
// every instance sharing the storage.
//
// It fails closed: until the records were read once, Ready is false and
// callers must accept no session; a record that could not be stored is
// kept and stored again on every Refresh until it is.
type Revocations struct {
	storage certmagic.Storage
	prefix  string

	mu      sync.RWMutex
	revoked map[string]int64 // session ID -> expiry (Unix seconds)
	pending map[string]Record
	loaded  bool
}

// Record is what storage keeps per revoked session.
type Record struct {
	Expires int64  `json:"exp"`
	User    string `json:"user"`
	At      int64  `json:"at"`
}

// NewRevocations returns an empty set backed by storage under prefix.
func NewRevocations(storage certmagic.Storage, prefix string) *Revocations {
	return &Revocations{storage: storage, prefix: prefix, revoked: map[string]int64{}, pending: map[string]Record{}}
}

// SetStorage points the set at another storage (after a config reload);
// the records in memory stay.
func (v *Revocations) SetStorage(storage certmagic.Storage) {
	v.mu.Lock()
	v.storage = storage
	v.mu.Unlock()
}

// Ready reports whether the records were read from storage at least once.
func (v *Revocations) Ready() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.loaded
}

// IsRevoked reports whether the session was logged out.
func (v *Revocations) IsRevoked(sid string) bool {
	v.mu.RLock()
	_, ok := v.revoked[sid]
	v.mu.RUnlock()
	return ok
}

// Tag identifies a session in logs without giving its ID away.
func Tag(sid string) string {
	sum := sha256.Sum256([]byte("hubgate session tag\x00" + sid))
	return hex.EncodeToString(sum[:6])
}

// Revoke ends s at once in this process and stores its record. When the
// store fails, the record is kept and stored again by Refresh; the error
// says that other instances may accept the session until then.
func (v *Revocations) Revoke(ctx context.Context, s *Session) error {
	rec := Record{Expires: s.Expires, User: s.User, At: time.Now().Unix()}
	v.mu.Lock()
	v.revoked[s.ID] = s.Expires
	st := v.storage
	v.mu.Unlock()
	if err := v.store(ctx, st, s.ID, rec); err != nil {
		v.mu.Lock()
		v.pending[s.ID] = rec
		v.mu.Unlock()
		return err
	}
	return nil
}

func (v *Revocations) store(ctx context.Context, st certmagic.Storage, sid string, rec Record) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := st.Store(ctx, v.prefix+"/"+sid, raw); err != nil {
		return fmt.Errorf("store revocation of session %s: %w", Tag(sid), err)
	}
	return nil
}

// Refresh stores records still pending, reads the records from storage,
// forgets expired ones (deleting them from storage) and returns the
// records new to this process, so the caller can close those sessions'
// websockets.
func (v *Revocations) Refresh(ctx context.Context) (map[string]Record, error) {
	v.mu.RLock()
	st := v.storage
	pending := make(map[string]Record, len(v.pending))
	for sid, rec := range v.pending {
		pending[sid] = rec
	}
	v.mu.RUnlock()
	for sid, rec := range pending {
		if err := v.store(ctx, st, sid, rec); err != nil {
			return nil, err
		}
		v.mu.Lock()
		delete(v.pending, sid)
		v.mu.Unlock()
	}
	keys, err := st.List(ctx, v.prefix, false)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	now := time.Now().Unix()
	fresh := map[string]Record{}
	for _, key := range keys {
		sid := path.Base(key)
		if v.IsRevoked(sid) {
			continue
		}
		raw, err := st.Load(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load revocation %s: %w", Tag(sid), err)
		}
		var rec Record
		if json.Unmarshal(raw, &rec) != nil || rec.Expires < now {
			_ = st.Delete(ctx, key)
			continue
		}
		fresh[sid] = rec
	}
	v.mu.Lock()
	for sid, rec := range fresh {
		v.revoked[sid] = rec.Expires
	}
	for sid, exp := range v.revoked {
		if exp < now {
			delete(v.revoked, sid)
		}
	}
	v.loaded = true
	v.mu.Unlock()
	return fresh, nil
}
