// Package backup keeps users' homes safe beyond their containers: it
// backs every home up with restic on a schedule (helper containers that
// mount the home read-only, so running servers keep running), restores a
// home or a path of it from a snapshot, measures each home's size for the
// pages, the metrics and the team's storage quota, and offboards users who
// have been out of the policy for longer than its retention: servers
// stopped, tokens and shares revoked, a final backup taken and verified,
// then the volume deleted, each step audited.
//
// It is the only code in hubgate that deletes a home volume (offboard.go),
// and only after a verified final backup.
//
// State shared by replicas (last backups, sizes, the retention clocks)
// lives in Caddy's storage; one replica at a time works, under a storage
// lock. It knows nothing of HTTP: the web package calls it.
package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/internal/randid"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
)

// Defaults of Config.
const (
	DefaultEvery      = 6 * time.Hour
	DefaultUsageEvery = 15 * time.Minute
	DefaultCheckEvery = time.Minute
	DefaultTimeout    = time.Hour
	DefaultImage      = "hubgate/restic:latest"
)

// Config is the backup configuration (the Caddyfile's backup block).
type Config struct {
	// Repository is an absolute path on the engine's host, or a restic
	// repository URL such as "s3:https://s3.example.org/bucket/hub".
	Repository string
	// PasswordFile is the file holding the repository's password.
	PasswordFile string
	// PasswordEnv names an environment variable holding it instead.
	PasswordEnv string
	// CredentialsFile is an AWS shared-credentials file for an S3
	// repository, mounted read-only into the helpers.
	CredentialsFile string
	// Every is the backup interval; UsageEvery the measuring interval;
	// CheckEvery how often the retention clocks are looked at.
	Every, UsageEvery, CheckEvery time.Duration
	// KeepDaily and KeepWeekly are restic's keep policy (0 and 0: keep
	// every snapshot).
	KeepDaily, KeepWeekly int
	// Image is the helper image.
	Image string
	// Timeout bounds one restic run.
	Timeout time.Duration

	// passwordPath is the file mounted into helpers: PasswordFile, or a
	// private copy of PasswordEnv's value.
	passwordPath string
}

// Revoker revokes what a user holds beyond their sessions (API tokens,
// shares, grants) when they are offboarded. Other parts of hubgate
// register theirs with Options.Revokers.
type Revoker interface {
	// Name says what it revokes, for the audit log ("tokens", "shares").
	Name() string
	// RevokeUser revokes everything of user's; it returns how many.
	RevokeUser(ctx context.Context, user string) (int, error)
}

// Deps are what the manager works with; they change with each config.
type Deps struct {
	// Spawner is the engine backend; it must implement
	// spawner.HelperRunner.
	Spawner spawner.Spawner
	// Stop stops one server on behalf of by (the hub runtime's Stop).
	Stop func(ctx context.Context, user, server, by string) error
	// CloseUser closes a user's websockets.
	CloseUser func(user string) int
	// Policy is the policy in force; PolicyOK whether the last reload
	// succeeded (deletion clocks do not run out while it failed).
	Policy   func() *policies.Policy
	PolicyOK func() bool
	// Revokers are called when a user is offboarded.
	Revokers []Revoker
	Storage  certmagic.Storage
	Logger   *zap.Logger
	Audit    *zap.Logger
}

// Manager is one deployment's backup runtime. It outlives config reloads
// (in a usage pool keyed by the deployment's name); Configure applies each
// config.
type Manager struct {
	name   string
	prefix string

	cfg  atomic.Pointer[Config]
	deps atomic.Pointer[Deps]

	mu     sync.RWMutex
	users  map[string]*UserState // the cache the pages read
	rounds Rounds

	ctx    context.Context
	cancel context.CancelFunc
	kick   chan struct{}
	tmpDir string

	initOnce sync.Mutex
	inited   bool

	// repoMu orders this gateway's restic runs on the repository: the
	// commands that take restic's exclusive lock (forget --prune, check)
	// run alone, the others together (restic.go).
	repoMu sync.RWMutex

	// now is the clock; tests set it.
	now func() time.Time
}

// New makes the manager of deployment name, whose storage keys live
// under prefix, and starts its loop. Configure must be called before the
// loop does anything.
func New(name, prefix string) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		name: name, prefix: prefix, users: map[string]*UserState{},
		ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1), now: time.Now,
	}
	go m.loop()
	return m
}

// Configure applies a (re)loaded config. It checks the password source
// (the file must be readable; the variable set) without logging it.
func (m *Manager) Configure(c Config, d Deps) error {
	if _, ok := d.Spawner.(spawner.HelperRunner); !ok {
		return errors.New("backup: this container backend cannot run helper containers (backups run on Docker; Kubernetes Jobs are not built yet)")
	}
	if c.Every <= 0 {
		c.Every = DefaultEvery
	}
	if c.UsageEvery <= 0 {
		c.UsageEvery = DefaultUsageEvery
	}
	if c.CheckEvery <= 0 {
		c.CheckEvery = DefaultCheckEvery
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Image == "" {
		c.Image = DefaultImage
	}
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	if d.Audit == nil {
		d.Audit = d.Logger
	}
	switch {
	case c.PasswordFile != "":
		abs, err := filepath.Abs(c.PasswordFile)
		if err != nil {
			return fmt.Errorf("backup: password_file: %w", err)
		}
		if b, err := os.ReadFile(abs); err != nil || len(b) == 0 {
			return fmt.Errorf("backup: password_file %s must be a readable, non-empty file", abs)
		}
		c.passwordPath = abs
	case c.PasswordEnv != "":
		pw := os.Getenv(c.PasswordEnv)
		if pw == "" {
			return fmt.Errorf("backup: the environment variable %s (password_env) is not set", c.PasswordEnv)
		}
		p, err := m.privateCopy(pw)
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		c.passwordPath = p
	default:
		return errors.New("backup: password_file or password_env is required")
	}
	if filepath.IsAbs(c.Repository) {
		// A repository on this host: made if missing, readable by no one
		// else (restic encrypts it anyway).
		if err := os.MkdirAll(c.Repository, 0o700); err != nil {
			return fmt.Errorf("backup: repository: %w", err)
		}
	}
	m.cfg.Store(&c)
	m.deps.Store(&d)
	m.Kick()
	return nil
}

// privateCopy writes the password to a file only this user can read, for
// the helpers to mount; it is removed when the manager is destroyed.
func (m *Manager) privateCopy(pw string) (string, error) {
	if m.tmpDir == "" {
		dir, err := os.MkdirTemp("", "hubgate-backup-")
		if err != nil {
			return "", err
		}
		m.tmpDir = dir
	}
	p := filepath.Join(m.tmpDir, "password-"+randid.New(6))
	if err := os.WriteFile(p, []byte(pw), 0o600); err != nil {
		return "", err
	}
	return p, nil
}

// Destruct stops the loop when the last config using the manager is
// unloaded (caddy.Destructor).
func (m *Manager) Destruct() error {
	m.cancel()
	if m.tmpDir != "" {
		return os.RemoveAll(m.tmpDir)
	}
	return nil
}

// Kick makes the loop look at its work now.
func (m *Manager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *Manager) runner() spawner.HelperRunner {
	return m.deps.Load().Spawner.(spawner.HelperRunner)
}

func (m *Manager) store() store {
	return store{st: m.deps.Load().Storage, prefix: m.prefix}
}

// loop does the scheduled work every CheckEvery (or when kicked).
func (m *Manager) loop() {
	for {
		c := m.cfg.Load()
		wait := DefaultCheckEvery
		if c != nil {
			wait = c.CheckEvery
		}
		t := time.NewTimer(wait)
		select {
		case <-m.ctx.Done():
			t.Stop()
			return
		case <-m.kick:
			t.Stop()
		case <-t.C:
		}
		if m.cfg.Load() == nil {
			continue
		}
		m.tick(m.ctx)
	}
}

// tick refreshes the cache, then, holding the storage lock, does what is
// due: retention clocks and offboarding, measuring, backups and pruning.
func (m *Manager) tick(ctx context.Context) {
	d := m.deps.Load()
	if err := m.refresh(ctx); err != nil {
		d.Logger.Warn("reading the backup state failed", zap.Error(err))
	}
	c := m.cfg.Load()
	lctx, cancel := context.WithTimeout(ctx, c.CheckEvery)
	err := d.Storage.Lock(lctx, m.store().lockKey())
	cancel()
	if err != nil {
		return // another replica is working
	}
	defer func() { _ = d.Storage.Unlock(context.WithoutCancel(ctx), m.store().lockKey()) }()
	if err := m.work(ctx, c, d); err != nil && ctx.Err() == nil {
		d.Logger.Error("backup work failed", zap.Error(err))
	}
}

// work is one round of the lock holder.
func (m *Manager) work(ctx context.Context, c *Config, d *Deps) error {
	if err := m.refresh(ctx); err != nil {
		return err
	}
	homes, err := m.runner().Homes(ctx)
	if err != nil {
		return fmt.Errorf("list homes: %w", err)
	}
	m.retention(ctx, c, d, homes)
	now := m.now()
	rounds := m.Rounds()
	st := m.store()
	if now.Sub(rounds.Usage) >= c.UsageEvery {
		for _, u := range homes {
			if err := m.MeasureUser(ctx, u); err != nil && ctx.Err() == nil {
				d.Logger.Warn("measuring a home failed", zap.String("user", u), zap.Error(err))
			}
		}
		rounds.Usage = now
		updateUsageMetrics(m.Users(), d.Policy())
	}
	if now.Sub(rounds.Backup) >= c.Every {
		if err := m.ensureRepo(ctx, c); err != nil {
			return err
		}
		for _, u := range homes {
			_, _ = m.BackupUser(ctx, u, false)
		}
		rounds.Backup = now
		if now.Sub(rounds.Prune) >= 24*time.Hour || rounds.Prune.IsZero() {
			if err := m.forget(ctx, c); err != nil {
				d.Logger.Error("restic forget/prune failed", zap.Error(err))
			} else {
				rounds.Prune = now
			}
		}
		if err := m.RefreshSnapshots(ctx); err != nil {
			d.Logger.Warn("listing snapshots failed", zap.Error(err))
		}
	}
	m.mu.Lock()
	m.rounds = rounds
	m.mu.Unlock()
	return st.saveJSON(ctx, st.roundsKey(), rounds)
}

// refresh reloads the cache from storage (what other replicas did).
func (m *Manager) refresh(ctx context.Context) error {
	st := m.store()
	all, err := st.loadAll(ctx)
	if err != nil {
		return err
	}
	rounds, err := st.loadRounds(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.users, m.rounds = all, rounds
	m.mu.Unlock()
	return nil
}

// update changes one user's state and stores it.
func (m *Manager) update(ctx context.Context, user string, f func(*UserState)) (UserState, error) {
	m.mu.Lock()
	u := m.users[user]
	if u == nil {
		u = &UserState{User: user}
		m.users[user] = u
	}
	f(u)
	cp := *u
	m.mu.Unlock()
	st := m.store()
	return cp, st.saveJSON(ctx, st.userKey(user), cp)
}

// User returns a copy of user's state (from the cache: no engine or
// storage call).
func (m *Manager) User(user string) (UserState, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	u, ok := m.users[user]
	if !ok {
		return UserState{User: user}, false
	}
	return *u, true
}

// Users returns copies of every user's state, from the cache.
func (m *Manager) Users() map[string]UserState {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]UserState, len(m.users))
	for k, v := range m.users {
		out[k] = *v
	}
	return out
}

// Rounds is when the scheduled work last ran.
func (m *Manager) Rounds() Rounds {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rounds
}

// Config is the configuration in force.
func (m *Manager) Config() Config { return *m.cfg.Load() }

// Seen records the groups a user was seen with (on a page of theirs),
// so a user in a team only through a group counts as in the policy. It
// writes to storage only when they changed.
func (m *Manager) Seen(ctx context.Context, user string, groups []string) {
	groups = slices.Sorted(slices.Values(groups))
	m.mu.RLock()
	u := m.users[user]
	same := u != nil && slices.Equal(u.Groups, groups)
	m.mu.RUnlock()
	if same || (u == nil && len(groups) == 0) {
		return
	}
	if _, err := m.update(ctx, user, func(s *UserState) { s.Groups = groups }); err != nil {
		m.deps.Load().Logger.Warn("storing a user's groups failed", zap.String("user", user), zap.Error(err))
	}
}

// ensureRepo initialises the repository once per process.
func (m *Manager) ensureRepo(ctx context.Context, c *Config) error {
	m.initOnce.Lock()
	defer m.initOnce.Unlock()
	if m.inited {
		return nil
	}
	if err := m.initRepo(ctx, c); err != nil {
		return err
	}
	m.inited = true
	return nil
}

// BackupUser backs user's home up now, records the result (the admin
// page, the audit log, the metrics) and returns the snapshot.
func (m *Manager) BackupUser(ctx context.Context, user string, final bool) (Snapshot, error) {
	c, d := m.cfg.Load(), m.deps.Load()
	err := m.ensureRepo(ctx, c)
	var snap Snapshot
	if err == nil {
		snap, err = m.backupHome(ctx, c, user, final)
	}
	if err != nil {
		backupFailures.Inc()
		d.Audit.Error("backup failed", zap.String("user", user), zap.Bool("final", final), zap.Error(err))
		_, _ = m.update(ctx, user, func(s *UserState) { s.Failure = &Failure{Time: m.now().UTC(), Error: err.Error()} })
		m.failingGauge()
		return Snapshot{}, err
	}
	backupSeconds.Observe(snap.Seconds)
	lastSuccess.SetToCurrentTime()
	d.Audit.Info("backup", zap.String("user", user), zap.String("snapshot", snap.Short), zap.Int64("bytes", snap.Bytes),
		zap.Int64("added", snap.Added), zap.Float64("seconds", snap.Seconds), zap.Bool("final", final))
	_, err = m.update(ctx, user, func(s *UserState) {
		s.Last, s.Failure = &snap, nil
		s.Snapshots = append([]Snapshot{snap}, s.Snapshots...)
		if len(s.Snapshots) > maxSnapshots {
			s.Snapshots = s.Snapshots[:maxSnapshots]
		}
	})
	m.failingGauge()
	return snap, err
}

// failingGauge counts the users whose last backup failed.
func (m *Manager) failingGauge() {
	n := 0
	for _, u := range m.Users() {
		if u.Failure != nil {
			n++
		}
	}
	backupsFailing.Set(float64(n))
}

// RefreshSnapshots lists the repository's snapshots into every user's
// state (one restic run), keeping what this gateway recorded about each.
func (m *Manager) RefreshSnapshots(ctx context.Context) error {
	c := m.cfg.Load()
	if err := m.ensureRepo(ctx, c); err != nil {
		return err
	}
	byUser, err := m.listSnapshots(ctx, c)
	if err != nil {
		return err
	}
	users := m.Users()
	for u := range byUser {
		if _, ok := users[u]; !ok {
			users[u] = UserState{User: u}
		}
	}
	for u, old := range users {
		known := map[string]Snapshot{}
		for _, s := range old.Snapshots {
			known[s.Short] = s // restic backup's summary gives the short ID only
		}
		var list []Snapshot
		for _, r := range byUser[u] {
			s, ok := known[short(r.ID)]
			if !ok {
				s = Snapshot{Time: r.Time.UTC(), Final: slices.Contains(r.Tags, finalTag)}
			}
			s.ID, s.Short = r.ID, short(r.ID)
			list = append(list, s)
		}
		slices.SortFunc(list, func(a, b Snapshot) int { return b.Time.Compare(a.Time) })
		if len(list) > maxSnapshots {
			list = list[:maxSnapshots]
		}
		if slices.EqualFunc(list, old.Snapshots, func(a, b Snapshot) bool { return a.ID == b.ID }) {
			continue
		}
		if _, err := m.update(ctx, u, func(s *UserState) { s.Snapshots = list }); err != nil {
			return err
		}
	}
	return nil
}

// MeasureUser measures user's home now.
func (m *Manager) MeasureUser(ctx context.Context, user string) error {
	u, err := m.measure(ctx, m.cfg.Load(), user)
	if err != nil {
		return err
	}
	_, err = m.update(ctx, user, func(s *UserState) { s.Usage = &u })
	return err
}

// Snapshot finds one of user's snapshots by (short) ID in the cache.
func (m *Manager) Snapshot(user, id string) (Snapshot, bool) {
	u, _ := m.User(user)
	for _, s := range u.Snapshots {
		if id != "" && (s.ID == id || s.Short == id) {
			return s, true
		}
	}
	return Snapshot{}, false
}

// ErrServersRunning refuses an in-place restore while a server runs.
var ErrServersRunning = errors.New("stop the user's servers first: an in-place restore needs the home unused")

// Restore restores one of user's snapshots (only paths in it, if any):
// into the side folder ~/restored/<snapshot>/ unless inPlace, which needs
// every server of the user's stopped. by is who asked, for the audit log.
// It returns where the files are.
func (m *Manager) Restore(ctx context.Context, user, id string, paths []string, inPlace bool, by string) (string, error) {
	c, d := m.cfg.Load(), m.deps.Load()
	snap, ok := m.Snapshot(user, id)
	if !ok {
		return "", fmt.Errorf("restore: %s has no snapshot %q", user, id)
	}
	clean, err := cleanPaths(paths)
	if err != nil {
		return "", err
	}
	if inPlace {
		if running, err := m.running(ctx, d, user); err != nil {
			return "", err
		} else if len(running) > 0 {
			return "", ErrServersRunning
		}
	}
	_, deleted := m.deletedHome(user)
	// An in-place restore makes the volume if it is gone (deleted by hand
	// or by offboarding).
	where, err := m.restore(ctx, c, user, snap.ID, clean, inPlace, inPlace)
	fields := []zap.Field{zap.String("user", user), zap.String("snapshot", snap.Short), zap.Strings("paths", clean),
		zap.Bool("in_place", inPlace), zap.String("by", by)}
	if err != nil {
		d.Audit.Error("restore failed", append(fields, zap.Error(err))...)
		return "", err
	}
	d.Audit.Info("restore", append(fields, zap.String("into", where))...)
	if deleted && inPlace && len(clean) == 0 {
		// The home is back on purpose: if its owner is still out of the
		// policy, the retention clock starts again from now.
		_, _ = m.update(ctx, user, func(s *UserState) { s.Deleted, s.MissingSince = nil, time.Time{} })
	}
	return where, nil
}

// deletedHome reports whether user's home was deleted by hubgate.
func (m *Manager) deletedHome(user string) (Deletion, bool) {
	u, _ := m.User(user)
	if u.Deleted == nil {
		return Deletion{}, false
	}
	return *u.Deleted, true
}

// running lists user's servers that exist on the engine.
func (m *Manager) running(ctx context.Context, d *Deps, user string) ([]string, error) {
	insts, err := d.Spawner.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	var out []string
	for _, in := range insts {
		if in.User == user {
			out = append(out, in.Server)
		}
	}
	return out, nil
}

// cleanPaths checks paths inside a home: relative, no "..", no NUL.
func cleanPaths(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		if p == "" {
			continue
		}
		if len(p) > 4096 || containsAny(p, "\x00\n\r") {
			return nil, fmt.Errorf("invalid path %q", p)
		}
		// Cleaned below "/", no ".." is left: nothing outside the home.
		c := filepath.Clean("/" + p)
		if c == "/" {
			return nil, nil // the whole home
		}
		out = append(out, c[1:])
	}
	return out, nil
}

func containsAny(s, chars string) bool {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}
