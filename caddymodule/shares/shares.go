// Package shares keeps who besides its owner may open a user's server:
// shares (the owner lets named users or a team in, optionally until a
// time) and admin access grants (an admin lets themself in, for a stated
// reason, for a bounded time, visibly to the owner). All of them live in
// one document in Caddy's storage, so every replica agrees; each instance
// reads it again every RefreshInterval, which bounds how stale another
// replica's view may be. It knows nothing of HTTP; who matches a grant is
// decided by Allows with the caller's team lookup.
package shares

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/hubgate/hubgate/internal/randid"
)

// Kinds of grant.
const (
	KindShare = "share"
	KindAdmin = "admin"
)

// RefreshInterval is how often the stored document is read again: the
// longest another replica's grant, revocation or expiry goes unseen here.
const RefreshInterval = 2 * time.Second

// MaxGrants bounds the document, so a user cannot grow it without end.
const MaxGrants = 10000

// Grant lets someone other than the owner open one of the owner's servers.
type Grant struct {
	// ID names the grant (random).
	ID string `json:"id"`
	// Kind is KindShare or KindAdmin.
	Kind string `json:"kind"`
	// Owner and Server name the server opened; Server "*" (admin access
	// only) is every server of the owner.
	Owner  string `json:"owner"`
	Server string `json:"server"`
	// Users and Teams are who may open it: user names, and policy team
	// names whose members (by name or group) may. An admin grant names
	// its admin in Users.
	Users []string `json:"users,omitempty"`
	Teams []string `json:"teams,omitempty"`
	// OwnerGroups are the owner's identity-provider groups when the
	// share was made: the owner's right to the server is checked with
	// them for guests' requests.
	OwnerGroups []string `json:"owner_groups,omitempty"`
	// By is who made it; Reason why (admin access: required).
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
	// Created and Expires (zero: no expiry) bound it.
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
}

// Active reports whether g is in force at now.
func (g *Grant) Active(now time.Time) bool {
	return g.Expires.IsZero() || now.Before(g.Expires)
}

// Covers reports whether g is about owner's server.
func (g *Grant) Covers(owner, server string) bool {
	return g.Owner == owner && (g.Server == server || g.Kind == KindAdmin && g.Server == "*")
}

// Names reports whether g lets user in: by name, or by a team inTeam says
// they are in.
func (g *Grant) Names(user string, inTeam func(team string) bool) bool {
	if slices.Contains(g.Users, user) {
		return true
	}
	if inTeam != nil {
		for _, t := range g.Teams {
			if inTeam(t) {
				return true
			}
		}
	}
	return false
}

// Allows finds the grant in grants that lets user open owner's server at
// now: a share before an admin grant (a share says more), isAdmin must
// hold for an admin grant to count. nil: none.
func Allows(grants []Grant, owner, server, user string, isAdmin bool, inTeam func(string) bool, now time.Time) *Grant {
	var admin *Grant
	for i := range grants {
		g := &grants[i]
		if !g.Covers(owner, server) || !g.Active(now) || !g.Names(user, inTeam) {
			continue
		}
		switch g.Kind {
		case KindShare:
			return g
		case KindAdmin:
			if isAdmin && admin == nil {
				admin = g
			}
		}
	}
	return admin
}

// document is what storage holds.
type document struct {
	Version int64   `json:"version"`
	Grants  []Grant `json:"grants"`
}

// Store reads and writes the grants of one deployment.
type Store struct {
	st  certmagic.Storage
	key string

	mu     sync.RWMutex
	doc    document
	loaded bool
}

// New makes the store of the deployment whose storage keys start with
// prefix. Call Refresh before use.
func New(st certmagic.Storage, prefix string) *Store {
	return &Store{st: st, key: prefix + "/shares.json"}
}

// SetStorage swaps the storage (after a config reload).
func (s *Store) SetStorage(st certmagic.Storage) {
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
}

// Ready reports whether the document was read at least once: until then
// nobody but owners gets in (fail closed).
func (s *Store) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.loaded
}

// All returns the grants as last read, sorted by owner, server, creation.
// The slice must not be modified.
func (s *Store) All() []Grant {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.doc.Grants
}

func (s *Store) storage() certmagic.Storage {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st
}

func (s *Store) read(ctx context.Context) (document, error) {
	var d document
	raw, err := s.storage().Load(ctx, s.key)
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("load %s: %w", s.key, err)
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, fmt.Errorf("decode %s: %w", s.key, err)
	}
	return d, nil
}

// Refresh reads the document again and returns the grants that were in
// force here and are gone now (revoked on another replica), so their
// websockets can be closed.
func (s *Store) Refresh(ctx context.Context) ([]Grant, error) {
	d, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	return s.swap(d), nil
}

// swap installs d if it is newer and returns the grants it dropped.
func (s *Store) swap(d document) []Grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded && d.Version <= s.doc.Version {
		return nil
	}
	kept := make(map[string]bool, len(d.Grants))
	for _, g := range d.Grants {
		kept[g.ID] = true
	}
	var gone []Grant
	for _, g := range s.doc.Grants {
		if !kept[g.ID] {
			gone = append(gone, g)
		}
	}
	s.doc, s.loaded = d, true
	return gone
}

// update changes the document under the storage lock and stores it.
func (s *Store) update(ctx context.Context, change func(*document) error) error {
	st := s.storage()
	if err := st.Lock(ctx, s.key); err != nil {
		return fmt.Errorf("lock %s: %w", s.key, err)
	}
	defer func() { _ = st.Unlock(context.WithoutCancel(ctx), s.key) }()
	d, err := s.read(ctx)
	if err != nil {
		return err
	}
	if err := change(&d); err != nil {
		return err
	}
	d.Version++
	sort.SliceStable(d.Grants, func(i, j int) bool {
		a, b := d.Grants[i], d.Grants[j]
		if a.Owner != b.Owner {
			return a.Owner < b.Owner
		}
		if a.Server != b.Server {
			return a.Server < b.Server
		}
		return a.Created.Before(b.Created)
	})
	raw, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode %s: %w", s.key, err)
	}
	if err := st.Store(ctx, s.key, raw); err != nil {
		return fmt.Errorf("store %s: %w", s.key, err)
	}
	s.swap(d)
	return nil
}

// Add stores a new grant (its ID and Created are filled in) and returns
// it. Expired grants are dropped from the document on the way.
func (s *Store) Add(ctx context.Context, g Grant, now time.Time) (Grant, error) {
	g.ID = randid.ID()
	g.Created = now.UTC()
	err := s.update(ctx, func(d *document) error {
		d.Grants = slices.DeleteFunc(d.Grants, func(x Grant) bool { return !x.Active(now) })
		if len(d.Grants) >= MaxGrants {
			return fmt.Errorf("too many shares (%d); revoke some first", MaxGrants)
		}
		d.Grants = append(d.Grants, g)
		return nil
	})
	return g, err
}

// ErrNotFound is returned by Revoke for a grant that is not there, or not
// one the caller may revoke.
var ErrNotFound = errors.New("no such share")

// Revoke removes the grant with the given ID if may allows it, and
// returns it.
func (s *Store) Revoke(ctx context.Context, id string, may func(Grant) bool) (Grant, error) {
	var gone Grant
	err := s.update(ctx, func(d *document) error {
		i := slices.IndexFunc(d.Grants, func(x Grant) bool { return x.ID == id })
		if i < 0 || !may(d.Grants[i]) {
			return ErrNotFound
		}
		gone = d.Grants[i]
		d.Grants = slices.Delete(d.Grants, i, i+1)
		return nil
	})
	return gone, err
}
