package backup

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/hubgate/hubgate/spawner"
)

// Paths inside the helper container.
const (
	repoMount     = "/repo"
	passwordMount = "/run/hubgate/restic-password"
	credsMount    = "/run/hubgate/aws-credentials"
	homeRoot      = "/home"
)

// homePath is where a user's volume is mounted in a helper, and so the
// path their snapshots hold: one path per user, so restic picks the
// user's own last snapshot as the parent of the next.
func homePath(user string) string { return homeRoot + "/" + spawner.EscapeName(user) }

// userTag is the restic tag of a user's snapshots.
func userTag(user string) string { return "user=" + spawner.EscapeName(user) }

// finalTag marks the snapshot taken before a home is deleted; forget
// keeps every snapshot carrying it.
const finalTag = "final"

// run is one restic (or backup-helper) invocation.
type run struct {
	kind   string // helper kind, for the container's name
	user   string // whose home is mounted ("" for none)
	rw     bool   // mount it writable (restores)
	create bool   // create the volume if missing
	cmd    []string
}

// exec runs r in a helper container with the repository and the password
// file mounted. The password is never in the container's environment,
// its command line or the logs: restic reads it from the mounted file.
func (m *Manager) exec(ctx context.Context, c *Config, r run) (spawner.HelperResult, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	spec := spawner.HelperSpec{
		Kind:         r.kind,
		User:         r.user,
		Image:        c.Image,
		Cmd:          r.cmd,
		HomeReadOnly: !r.rw,
		CreateVolume: r.create,
		Env: map[string]string{
			"RESTIC_PASSWORD_FILE": passwordMount,
			"RESTIC_REPOSITORY":    c.Repository,
		},
		Binds: []spawner.Bind{{Source: c.passwordPath, Target: passwordMount, ReadOnly: true}},
	}
	if r.user != "" {
		spec.HomeMount = homePath(r.user)
	}
	if path.IsAbs(c.Repository) {
		spec.Env["RESTIC_REPOSITORY"] = repoMount
		spec.Binds = append(spec.Binds, spawner.Bind{Source: c.Repository, Target: repoMount})
	} else {
		spec.Network = true
		if c.CredentialsFile != "" {
			spec.Env["AWS_SHARED_CREDENTIALS_FILE"] = credsMount
			spec.Binds = append(spec.Binds, spawner.Bind{Source: c.CredentialsFile, Target: credsMount, ReadOnly: true})
		}
	}
	res, err := m.runner().RunHelper(ctx, spec)
	if err != nil {
		return res, err
	}
	if res.ExitCode != 0 {
		return res, fmt.Errorf("%s exited with status %d: %s", r.cmd[0], res.ExitCode, lastLines(res.Stderr, 600))
	}
	return res, nil
}

// restic runs restic with the given arguments (no local cache: helpers
// are fresh containers).
//
// restic 0.14 fails at once when another restic holds a conflicting lock
// on the repository (it has no --retry-lock): the runs of this gateway
// are ordered by repoMu (an admin's "back up now" while the schedule
// prunes), and a run refused because of a lock held elsewhere (another
// replica's round) is tried again with a backoff for up to lockWait.
func (m *Manager) restic(ctx context.Context, c *Config, r run, args ...string) (spawner.HelperResult, error) {
	r.cmd = append([]string{"/usr/bin/restic", "--no-cache"}, args...)
	exclusive := len(args) > 0 && (args[0] == "forget" || args[0] == "prune" || args[0] == "check")
	deadline := time.Now().Add(lockWait)
	wait := 500 * time.Millisecond
	for {
		if exclusive {
			m.repoMu.Lock()
		} else {
			m.repoMu.RLock()
		}
		res, err := m.exec(ctx, c, r)
		if exclusive {
			m.repoMu.Unlock()
		} else {
			m.repoMu.RUnlock()
		}
		if err == nil || !strings.Contains(res.Stderr, "repository is already locked") || time.Now().Add(wait).After(deadline) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// lockWait bounds how long a restic run waits for another's lock.
const lockWait = 2 * time.Minute

// lastLines is the end of s, at most n bytes, trimmed.
func lastLines(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// initRepo creates the repository unless it exists.
func (m *Manager) initRepo(ctx context.Context, c *Config) error {
	if _, err := m.restic(ctx, c, run{kind: "restic-check"}, "cat", "config"); err == nil {
		return nil
	}
	_, err := m.restic(ctx, c, run{kind: "restic-init"}, "init")
	if err != nil && !strings.Contains(err.Error(), "already") {
		return fmt.Errorf("initialise the repository: %w", err)
	}
	return nil
}

// backupSummary is the last line of `restic backup --json`.
type backupSummary struct {
	MessageType         string  `json:"message_type"`
	FilesNew            int64   `json:"files_new"`
	DataAdded           int64   `json:"data_added"`
	TotalFilesProcessed int64   `json:"total_files_processed"`
	TotalBytesProcessed int64   `json:"total_bytes_processed"`
	TotalDuration       float64 `json:"total_duration"`
	SnapshotID          string  `json:"snapshot_id"`
}

// backupHome takes a snapshot of user's home (mounted read-only).
func (m *Manager) backupHome(ctx context.Context, c *Config, user string, final bool) (Snapshot, error) {
	args := []string{"backup", "--json", "--host", m.name, "--tag", userTag(user)}
	if final {
		args = append(args, "--tag", finalTag)
	}
	start := time.Now()
	res, err := m.restic(ctx, c, run{kind: "backup", user: user}, append(args, homePath(user))...)
	if err != nil {
		return Snapshot{}, err
	}
	var sum backupSummary
	sc := bufio.NewScanner(strings.NewReader(res.Stdout))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line backupSummary
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.MessageType == "summary" {
			sum = line
		}
	}
	if sum.SnapshotID == "" {
		return Snapshot{}, errors.New("restic backup printed no summary")
	}
	snap := Snapshot{
		ID: sum.SnapshotID, Short: short(sum.SnapshotID), Time: start.UTC(),
		Bytes: sum.TotalBytesProcessed, Files: sum.TotalFilesProcessed, Added: sum.DataAdded,
		Seconds: time.Since(start).Seconds(), Final: final,
	}
	return snap, nil
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// resticSnapshot is one entry of `restic snapshots --json`.
type resticSnapshot struct {
	ID    string    `json:"id"`
	Short string    `json:"short_id"`
	Time  time.Time `json:"time"`
	Tags  []string  `json:"tags"`
	Paths []string  `json:"paths"`
}

// listSnapshots lists this deployment's snapshots, by user tag.
func (m *Manager) listSnapshots(ctx context.Context, c *Config) (map[string][]resticSnapshot, error) {
	res, err := m.restic(ctx, c, run{kind: "restic-list"}, "snapshots", "--json", "--host", m.name)
	if err != nil {
		return nil, err
	}
	var all []resticSnapshot
	if err := json.Unmarshal([]byte(res.Stdout), &all); err != nil {
		return nil, fmt.Errorf("decode restic snapshots: %w", err)
	}
	out := map[string][]resticSnapshot{}
	for _, s := range all {
		for _, t := range s.Tags {
			if esc, ok := strings.CutPrefix(t, "user="); ok {
				if u, ok := spawner.UnescapeName(esc); ok {
					out[u] = append(out[u], s)
				}
			}
		}
	}
	return out, nil
}

// forget applies the keep policy to this deployment's snapshots (per
// user: they are grouped by host and path) and prunes what is no longer
// referenced. Final snapshots are always kept.
func (m *Manager) forget(ctx context.Context, c *Config) error {
	args := []string{"forget", "--host", m.name, "--group-by", "host,paths", "--keep-tag", finalTag, "--prune"}
	if c.KeepDaily > 0 {
		args = append(args, "--keep-daily", fmt.Sprint(c.KeepDaily))
	}
	if c.KeepWeekly > 0 {
		args = append(args, "--keep-weekly", fmt.Sprint(c.KeepWeekly))
	}
	if c.KeepDaily <= 0 && c.KeepWeekly <= 0 {
		return nil // keep everything
	}
	// Snapshots taken in the last day are kept as well, so a backup that
	// has just been shown to the user stays restorable.
	args = append(args, "--keep-within", "1d")
	_, err := m.restic(ctx, c, run{kind: "restic-forget"}, args...)
	return err
}

// checkRepo runs `restic check` (the repository's structure and index).
func (m *Manager) checkRepo(ctx context.Context, c *Config) error {
	_, err := m.restic(ctx, c, run{kind: "restic-check"}, "check")
	return err
}

// restoreSize is what `restic stats --mode restore-size` says a snapshot
// would restore.
func (m *Manager) restoreSize(ctx context.Context, c *Config, id string) (int64, error) {
	res, err := m.restic(ctx, c, run{kind: "restic-stats"}, "stats", "--json", "--mode", "restore-size", id)
	if err != nil {
		return 0, err
	}
	var st struct {
		TotalSize int64 `json:"total_size"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(res.Stdout)), &st); err != nil {
		return 0, fmt.Errorf("decode restic stats: %w", err)
	}
	return st.TotalSize, nil
}

// measure runs the helper's du on user's home (read-only).
func (m *Manager) measure(ctx context.Context, c *Config, user string) (Usage, error) {
	res, err := m.exec(ctx, c, run{kind: "du", user: user, cmd: []string{"/usr/bin/backup-helper", "du", homePath(user)}})
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	if err := json.Unmarshal([]byte(strings.TrimSpace(res.Stdout)), &u); err != nil {
		return Usage{}, fmt.Errorf("decode du: %w", err)
	}
	u.Measured = time.Now().UTC()
	return u, nil
}

// restore restores snapshot id of user's home: into the side folder
// restored/<short id> (paths inside the home, or all of it), or in place
// over the home when inPlace (the caller has stopped the servers).
// create makes the volume first if it is missing.
func (m *Manager) restore(ctx context.Context, c *Config, user, id string, paths []string, inPlace, create bool) (string, error) {
	home := homePath(user)
	if inPlace {
		args := []string{"restore", id, "--target", "/"}
		for _, p := range paths {
			args = append(args, "--include", path.Join(home, p))
		}
		_, err := m.restic(ctx, c, run{kind: "restore", user: user, rw: true, create: create}, args...)
		return "~", err
	}
	side := "restored/" + short(id)
	cmd := append([]string{"/usr/bin/backup-helper", "restore", id, home, side}, paths...)
	_, err := m.exec(ctx, c, run{kind: "restore", user: user, rw: true, create: create, cmd: cmd})
	return "~/" + side, err
}
