package backup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
)

// Pending is a home whose owner is out of the policy, and when it will be
// deleted.
type Pending struct {
	User         string
	MissingSince time.Time
	// Deadline is when the home is deleted; zero while the policy keeps
	// homes forever (no retention).
	Deadline time.Time
}

// inPolicy reports whether user is in pol, by name or by the groups they
// were last seen with.
func inPolicy(pol *policies.Policy, u UserState) bool {
	return pol.Known(u.User, u.Groups)
}

// retention starts and stops the clocks of the users with a home, and
// offboards those whose clock ran out. A clock starts the first time the
// user is seen missing from the policy and stops (is cleared) as soon as
// they are back; only a user missing for the whole retention is deleted,
// so a policy typo that drops a team deletes nothing unless it stays for
// that long. While the last policy reload failed, no clock runs out.
func (m *Manager) retention(ctx context.Context, c *Config, d *Deps, homes []string) {
	pol := d.Policy()
	if pol == nil {
		return
	}
	now := m.now().UTC()
	for _, user := range homes {
		u, _ := m.User(user)
		switch in := inPolicy(pol, u); {
		case in && !u.MissingSince.IsZero():
			d.Audit.Info("offboarding clock stopped: the user is in the policy again", zap.String("user", user))
			_, _ = m.update(ctx, user, func(s *UserState) { s.MissingSince = time.Time{} })
		case !in && u.MissingSince.IsZero():
			fields := []zap.Field{zap.String("user", user), zap.Time("missing_since", now)}
			if pol.Retention > 0 {
				fields = append(fields, zap.Time("deletion_at", now.Add(pol.Retention)))
			}
			d.Audit.Warn("offboarding clock started: the user has a home but is not in the policy", fields...)
			_, _ = m.update(ctx, user, func(s *UserState) { s.MissingSince, s.Deleted = now, nil })
		case !in && pol.Retention > 0 && !now.Before(u.MissingSince.Add(pol.Retention)):
			if d.PolicyOK != nil && !d.PolicyOK() {
				continue
			}
			if err := m.Offboard(ctx, user, "retention"); err != nil && ctx.Err() == nil {
				d.Logger.Error("offboarding failed; retried on the next round", zap.String("user", user), zap.Error(err))
			}
		}
	}
	offboardPending.Set(float64(len(m.Pending(pol))))
}

// Pending lists the homes whose owners are out of the policy, soonest
// deletion first.
func (m *Manager) Pending(pol *policies.Policy) []Pending {
	var out []Pending
	for _, u := range m.Users() {
		if u.MissingSince.IsZero() || u.Deleted != nil || inPolicy(pol, u) {
			continue
		}
		p := Pending{User: u.User, MissingSince: u.MissingSince}
		if pol != nil && pol.Retention > 0 {
			p.Deadline = u.MissingSince.Add(pol.Retention)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].MissingSince.Equal(out[j].MissingSince) {
			return out[i].MissingSince.Before(out[j].MissingSince)
		}
		return out[i].User < out[j].User
	})
	return out
}

// Offboard takes user's home away, in order, each step audited: their
// servers are stopped, their websockets closed and what the Revokers hold
// revoked, a final backup is taken and verified, and only then is the
// volume deleted. A failed step stops there (the volume stays). by is
// "retention" or the admin who asked.
func (m *Manager) Offboard(ctx context.Context, user, by string) error {
	c, d := m.cfg.Load(), m.deps.Load()
	log := d.Audit.With(zap.String("user", user), zap.String("by", by))
	fail := func(step string, err error) error {
		log.Error("offboarding stopped", zap.String("step", step), zap.Error(err))
		return fmt.Errorf("offboard %s: %s: %w", user, step, err)
	}
	log.Warn("offboarding: begin")

	servers, err := m.running(ctx, d, user)
	if err != nil {
		return fail("list servers", err)
	}
	for _, srv := range servers {
		if err := d.Stop(ctx, user, srv, "offboarding:"+by); err != nil && !errors.Is(err, spawner.ErrNotFound) {
			return fail("stop server "+srv, err)
		}
	}
	log.Info("offboarding: servers stopped", zap.Strings("servers", servers))

	closed := 0
	if d.CloseUser != nil {
		closed = d.CloseUser(user)
	}
	revoked := []zap.Field{zap.Int("websockets_closed", closed)}
	for _, r := range d.Revokers {
		n, err := r.RevokeUser(ctx, user)
		if err != nil {
			return fail("revoke "+r.Name(), err)
		}
		revoked = append(revoked, zap.Int(r.Name()+"_revoked", n))
	}
	log.Info("offboarding: access revoked", revoked...)

	snap, err := m.FinalBackup(ctx, user)
	if err != nil {
		return fail("final backup", err)
	}
	log.Info("offboarding: final backup verified", zap.String("snapshot", snap.Short), zap.Int64("bytes", snap.Bytes))

	if err := d.Spawner.RemoveVolume(ctx, user); err != nil && !errors.Is(err, spawner.ErrNotFound) {
		return fail("delete volume", err)
	}
	volumesDeleted.Inc()
	_, err = m.update(ctx, user, func(s *UserState) {
		s.Deleted = &Deletion{Time: m.now().UTC(), Snapshot: snap.ID, By: by}
		s.Usage = nil
	})
	log.Warn("offboarding: volume deleted", zap.String("final_snapshot", snap.Short))
	_ = c
	return err
}

// FinalBackup takes the snapshot a deletion relies on and verifies it:
// the repository passes `restic check`, and the snapshot restores exactly
// as many bytes as the home holds (measured read-only just before).
func (m *Manager) FinalBackup(ctx context.Context, user string) (Snapshot, error) {
	c := m.cfg.Load()
	before, err := m.measure(ctx, c, user)
	if err != nil {
		return Snapshot{}, fmt.Errorf("measure the home: %w", err)
	}
	snap, err := m.BackupUser(ctx, user, true)
	if err != nil {
		return Snapshot{}, err
	}
	if err := m.checkRepo(ctx, c); err != nil {
		return Snapshot{}, fmt.Errorf("restic check: %w", err)
	}
	size, err := m.restoreSize(ctx, c, snap.ID)
	if err != nil {
		return Snapshot{}, err
	}
	if size != before.Bytes {
		return Snapshot{}, fmt.Errorf("snapshot %s restores %d bytes but the home holds %d", snap.Short, size, before.Bytes)
	}
	return snap, nil
}

// DeleteHome is an admin's explicit deletion of user's home: the same
// steps as offboarding (a verified final backup first).
func (m *Manager) DeleteHome(ctx context.Context, user, admin string) error {
	return m.Offboard(ctx, user, admin)
}

// RestoreDeleted recreates a deleted user's home from its final
// snapshot.
func (m *Manager) RestoreDeleted(ctx context.Context, user, admin string) (string, error) {
	del, ok := m.deletedHome(user)
	if !ok {
		return "", fmt.Errorf("the home of %s was not deleted by hubgate", user)
	}
	return m.Restore(ctx, user, del.Snapshot, nil, true, admin)
}

// Forecast says, for the users with a home, who the retention affects
// and when, as the gateway's loop would see it now: a user out of the
// policy whose clock has not started yet would start it now. It changes
// nothing (`caddy hubgate offboard --dry-run`).
func Forecast(pol *policies.Policy, homes []string, states map[string]*UserState, now time.Time) []Pending {
	var out []Pending
	for _, user := range homes {
		u := UserState{User: user}
		if s := states[user]; s != nil {
			u = *s
		}
		if inPolicy(pol, u) {
			continue
		}
		p := Pending{User: user, MissingSince: u.MissingSince}
		if p.MissingSince.IsZero() {
			p.MissingSince = now
		}
		if pol.Retention > 0 {
			p.Deadline = p.MissingSince.Add(pol.Retention)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out
}

// LoadStates reads every user's state from st under prefix, for tools.
func LoadStates(ctx context.Context, st certmagic.Storage, prefix string) (map[string]*UserState, error) {
	return store{st: st, prefix: prefix}.loadAll(ctx)
}
