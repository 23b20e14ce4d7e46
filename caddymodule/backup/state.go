package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/hubgate/hubgate/spawner"
)

// What the manager keeps in Caddy's storage, shared by every replica,
// under Prefix (such as "hubgate/<name>"):
//
//	backup/users/<escaped user>   UserState as JSON
//	backup/rounds                 Rounds as JSON
//	backup/lock                   the storage lock one replica holds while it works

// UserState is everything the manager knows of one user's home.
type UserState struct {
	// User is the canonical user name.
	User string `json:"user"`
	// Groups are the identity-provider groups the user was last seen
	// with: a user in a team only through a group is in the policy while
	// one of these still names a team.
	Groups []string `json:"groups,omitempty"`
	// Last is the last successful backup.
	Last *Snapshot `json:"last,omitempty"`
	// Snapshots are the user's snapshots in the repository, newest first
	// (at most maxSnapshots), as of the last listing.
	Snapshots []Snapshot `json:"snapshots,omitempty"`
	// Failure is the last backup's failure, cleared by a success.
	Failure *Failure `json:"failure,omitempty"`
	// Usage is the home's last measured size.
	Usage *Usage `json:"usage,omitempty"`
	// MissingSince is when the user was first seen missing from the
	// policy (zero while they are in it). Stored, so a restart does not
	// reset the retention clock.
	MissingSince time.Time `json:"missing_since,omitempty"`
	// Deleted says the home volume was deleted, when, and which final
	// snapshot holds it.
	Deleted *Deletion `json:"deleted,omitempty"`
}

// Snapshot is one restic snapshot of a user's home.
type Snapshot struct {
	// ID is restic's snapshot ID; Short its first 8 characters.
	ID    string    `json:"id"`
	Short string    `json:"short"`
	Time  time.Time `json:"time"`
	// Bytes and Files are the home's size and file count at the backup;
	// Added is what the backup added to the repository (after
	// deduplication and compression). Zero when the snapshot was only
	// listed, not taken by this gateway.
	Bytes int64 `json:"bytes,omitempty"`
	Files int64 `json:"files,omitempty"`
	Added int64 `json:"added,omitempty"`
	// Seconds is how long the backup took.
	Seconds float64 `json:"seconds,omitempty"`
	// Final marks the last backup before the home was deleted.
	Final bool `json:"final,omitempty"`
}

// Failure is a failed backup.
type Failure struct {
	Time  time.Time `json:"time"`
	Error string    `json:"error"`
}

// Usage is a home's measured size.
type Usage struct {
	Bytes    int64     `json:"bytes"`
	Files    int64     `json:"files"`
	Largest  []Folder  `json:"largest,omitempty"`
	Measured time.Time `json:"measured"`
}

// Folder is one of the largest folders of a home.
type Folder struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}

// Deletion records a deleted home.
type Deletion struct {
	Time time.Time `json:"time"`
	// Snapshot is the final snapshot's ID.
	Snapshot string `json:"snapshot"`
	// By is the admin who deleted it, or "retention".
	By string `json:"by"`
}

// Rounds is when the scheduled work last ran (any replica).
type Rounds struct {
	Backup time.Time `json:"backup"`
	Usage  time.Time `json:"usage"`
	Prune  time.Time `json:"prune"`
}

// maxSnapshots bounds the snapshots kept per user in the state.
const maxSnapshots = 50

// store reads and writes the state.
type store struct {
	st     certmagic.Storage
	prefix string
}

func (s store) userKey(user string) string {
	return s.prefix + "/backup/users/" + spawner.EscapeName(user)
}

func (s store) roundsKey() string { return s.prefix + "/backup/rounds" }

func (s store) lockKey() string { return s.prefix + "/backup/lock" }

func (s store) loadJSON(ctx context.Context, key string, v any) error {
	raw, err := s.st.Load(ctx, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

func (s store) saveJSON(ctx context.Context, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := s.st.Store(ctx, key, raw); err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	return nil
}

// loadAll reads every user's state.
func (s store) loadAll(ctx context.Context) (map[string]*UserState, error) {
	dir := s.prefix + "/backup/users"
	keys, err := s.st.List(ctx, dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*UserState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	out := make(map[string]*UserState, len(keys))
	for _, k := range keys {
		if !strings.HasPrefix(k, dir+"/") {
			k = dir + "/" + k
		}
		var u UserState
		if err := s.loadJSON(ctx, k, &u); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		if u.User != "" {
			out[u.User] = &u
		}
	}
	return out, nil
}

func (s store) loadRounds(ctx context.Context) (Rounds, error) {
	var r Rounds
	err := s.loadJSON(ctx, s.roundsKey(), &r)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	return r, err
}
