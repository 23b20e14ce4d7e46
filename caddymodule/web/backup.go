package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/backup"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/reqkind"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
)

// This file is the site's part of backups and storage: the snapshots and
// the restore form on the home page, the quota on the home and progress
// pages and before a start, and the admin page's section with its
// actions. Everything shown comes from the backup manager's cache: a page
// makes no engine call for it.

// restoreTimeout bounds a restore run from a page.
const restoreTimeout = 10 * time.Minute

var shortIDRE = regexp.MustCompile(`^[0-9a-f]{8,64}$`)

// storageView renders a quota for the pages; nil when not measured.
func storageView(q backup.Quota) *pages.StorageView {
	if !q.Measured {
		return nil
	}
	v := &pages.StorageView{Measured: true, Used: pages.SizeText(q.Bytes), At: q.At, OverSoft: q.OverSoft || q.OverHard, OverHard: q.OverHard}
	if q.Soft > 0 {
		v.Soft = pages.SizeText(q.Soft)
	}
	if q.Hard > 0 {
		v.Hard = pages.SizeText(q.Hard)
	}
	return v
}

func snapshotView(s backup.Snapshot) pages.SnapshotView {
	v := pages.SnapshotView{ID: s.ID, Short: s.Short, Time: s.Time, Final: s.Final, Size: "—"}
	if s.Bytes > 0 {
		v.Size = pages.SizeText(s.Bytes)
	}
	return v
}

// homeBackup fills the home page's storage and backups for sess's user.
func (s *Site) homeBackup(r *http.Request, sess *session.Session, grant policies.Grant, page *pages.HomePage) {
	m := s.o.Backup
	if m == nil {
		return
	}
	m.Seen(r.Context(), sess.User, sess.Groups)
	page.Storage = storageView(m.Quota(sess.User, grant.Storage))
	u, _ := m.User(sess.User)
	hb := &pages.HomeBackup{}
	for _, snap := range u.Snapshots {
		hb.Snapshots = append(hb.Snapshots, snapshotView(snap))
	}
	if sh := r.URL.Query().Get("restored"); shortIDRE.MatchString(sh) {
		hb.Notice = "Restored into ~/restored/" + sh + "/."
	}
	page.Backup = hb
}

// overQuota refuses a start when the home of owner (the server's owner,
// who may not be the visitor sess) is over its hard quota, with a page
// saying how much to delete and where the space goes. done reports that
// the answer was written.
func (s *Site) overQuota(w http.ResponseWriter, r *http.Request, sess *session.Session, owner string, d Decision, grant policies.Grant) (bool, error) {
	if s.o.Backup == nil || grant.Storage.Hard <= 0 {
		return false, nil
	}
	q := s.o.Backup.Quota(owner, grant.Storage)
	if !q.OverHard {
		return false, nil
	}
	s.denied(r, sess, http.StatusInsufficientStorage, "over_storage_quota", zap.String("server", d.Server), zap.Int64("bytes", q.Bytes), zap.Int64("hard", q.Hard))
	page := pages.QuotaPage{
		Frame: s.o.Login.Frame(sess, "Your home is full"), Server: d.Server,
		Used: pages.SizeText(q.Bytes), Hard: pages.SizeText(q.Hard), Delete: pages.SizeText(q.Bytes - q.Hard), At: q.At,
	}
	for _, f := range q.Largest {
		page.Largest = append(page.Largest, pages.FolderView{Path: f.Path, Size: pages.SizeText(f.Bytes)})
	}
	if !reqkind.WantsHTML(r) {
		largest := make([]map[string]any, 0, len(q.Largest))
		for _, f := range q.Largest {
			largest = append(largest, map[string]any{"path": f.Path, "bytes": f.Bytes})
		}
		return true, pages.WriteJSON(w, http.StatusInsufficientStorage, map[string]any{
			"error": "home over its storage quota", "status": "over_quota", "server": d.Server,
			"bytes": q.Bytes, "hard": q.Hard, "delete_bytes": q.Bytes - q.Hard, "largest": largest,
		})
	}
	return true, s.o.Pages.Quota(w, page)
}

// progressStorage is the soft-quota warning of the progress page.
func (s *Site) progressStorage(sess *session.Session) *pages.StorageView {
	if s.o.Backup == nil {
		return nil
	}
	grant := s.o.Policy().Grant(sess.User, sess.Groups)
	return storageView(s.o.Backup.Quota(sess.User, grant.Storage))
}

// serveRestore restores a path of the user's own home (or all of it)
// from one of their snapshots into ~/restored/<snapshot>/ (POST, CSRF).
func (s *Site) serveRestore(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("restore takes POST"))
	}
	if ok, err := s.checkForm(w, r, sess); !ok {
		return err
	}
	if s.o.Backup == nil {
		return s.refuse(w, r, sess, http.StatusNotFound, "Backups are not configured on this hub.", "no_backups")
	}
	snap, ok := s.o.Backup.Snapshot(sess.User, r.PostFormValue("snapshot"))
	if !ok {
		return s.refuse(w, r, sess, http.StatusBadRequest, "There is no such snapshot of your home.", "bad_snapshot")
	}
	ctx, cancel := context.WithTimeout(r.Context(), restoreTimeout)
	defer cancel()
	_, err := s.o.Backup.Restore(ctx, sess.User, snap.ID, splitPaths(r.PostFormValue("path")), false, sess.User)
	if err != nil {
		s.o.Logger.Error("restore failed", zap.String("user", sess.User), zap.String("snapshot", snap.Short), zap.Error(err))
		return s.o.Pages.Problem(w, r, http.StatusBadGateway, s.o.Login.Frame(sess, "Restore failed"),
			"The restore did not work: "+err.Error(), "/", nil)
	}
	http.Redirect(w, r, "/?restored="+url.QueryEscape(snap.Short), http.StatusSeeOther)
	return nil
}

// splitPaths reads the path field: one path per line.
func splitPaths(v string) []string {
	var out []string
	for _, p := range strings.Split(v, "\n") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// adminBackup is the admin page's backups section.
func (s *Site) adminBackup(r *http.Request, pol *policies.Policy) *pages.AdminBackup {
	m := s.o.Backup
	if m == nil {
		return nil
	}
	c := m.Config()
	ab := &pages.AdminBackup{Repository: c.Repository, Every: c.Every.String(), LastRound: m.Rounds().Backup, Retention: "forever (nothing is deleted)"}
	if pol != nil && pol.Retention > 0 {
		ab.Retention = pol.Retention.String() + " after a user leaves the policy"
	}
	for _, u := range m.Users() {
		row := pages.BackupRow{User: u.User, Storage: deref(storageView(backup.Check(u.Usage, pol.Grant(u.User, u.Groups).Storage)))}
		if u.Last != nil {
			v := snapshotView(*u.Last)
			row.Last = &v
		}
		if u.Failure != nil {
			row.Failure, row.FailedAt = u.Failure.Error, u.Failure.Time
		}
		if u.Deleted != nil {
			row.Deleted = &pages.SnapshotView{ID: u.Deleted.Snapshot, Short: shortOf(u.Deleted.Snapshot), Time: u.Deleted.Time}
		}
		for _, snap := range u.Snapshots {
			row.Snapshots = append(row.Snapshots, snapshotView(snap))
		}
		ab.Rows = append(ab.Rows, row)
	}
	sort.Slice(ab.Rows, func(i, j int) bool { return ab.Rows[i].User < ab.Rows[j].User })
	now := time.Now()
	for _, p := range m.Pending(pol) {
		v := pages.PendingView{User: p.User, MissingSince: p.MissingSince, Deadline: p.Deadline, Countdown: "—"}
		if !p.Deadline.IsZero() {
			left := p.Deadline.Sub(now).Round(time.Second)
			v.Countdown = "due now"
			if left > 0 {
				v.Countdown = left.String()
			}
		}
		ab.Pending = append(ab.Pending, v)
	}
	q := r.URL.Query()
	if done := q.Get("done"); done != "" {
		ab.Notice = fmt.Sprintf("Done: %s for %s.", done, q.Get("user"))
		if into := q.Get("into"); into != "" {
			ab.Notice += " Files are in " + into + "."
		}
	}
	return ab
}

func deref(v *pages.StorageView) pages.StorageView {
	if v == nil {
		return pages.StorageView{}
	}
	return *v
}

func shortOf(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// serveAdminBackup runs an admin's backup action (POST, CSRF): back up
// now, restore (into the side folder, or in place with the servers
// stopped), delete a home (the user's name typed as confirmation; a
// verified final backup first), restore a deleted home.
func (s *Site) serveAdminBackup(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("backup actions take POST"))
	}
	if ok, err := s.checkForm(w, r, sess); !ok {
		return err
	}
	m := s.o.Backup
	if m == nil {
		return s.refuse(w, r, sess, http.StatusNotFound, "Backups are not configured on this hub.", "no_backups")
	}
	user := policies.NormalizeUser(r.PostFormValue("user"))
	if user == "" {
		return s.refuse(w, r, sess, http.StatusBadRequest, "No such user.", "bad_user")
	}
	action := r.PostFormValue("action")
	ctx, cancel := context.WithTimeout(r.Context(), restoreTimeout)
	defer cancel()
	var into string
	var err error
	switch action {
	case "backup":
		_, err = m.BackupUser(ctx, user, false)
		if err == nil {
			err = m.MeasureUser(ctx, user)
		}
	case "restore":
		snap, ok := m.Snapshot(user, r.PostFormValue("snapshot"))
		if !ok {
			return s.refuse(w, r, sess, http.StatusBadRequest, "There is no such snapshot of that home.", "bad_snapshot")
		}
		into, err = m.Restore(ctx, user, snap.ID, splitPaths(r.PostFormValue("path")), r.PostFormValue("in_place") == "1", sess.User)
	case "delete":
		if r.PostFormValue("confirm") != user {
			return s.refuse(w, r, sess, http.StatusBadRequest, "Type the user's name exactly to confirm the deletion of their home.", "delete_unconfirmed")
		}
		s.o.Audit.Warn("home deletion requested", zap.String("user", user), zap.String("by", sess.User))
		err = m.DeleteHome(ctx, user, sess.User)
	case "restore-deleted":
		into, err = m.RestoreDeleted(ctx, user, sess.User)
	default:
		return s.refuse(w, r, sess, http.StatusBadRequest, "Unknown backup action.", "bad_action")
	}
	if err != nil {
		status := http.StatusBadGateway
		if errors.Is(err, backup.ErrServersRunning) {
			status = http.StatusConflict
		}
		return s.o.Pages.Problem(w, r, status, s.o.Login.Frame(sess, "Backup action failed"), fmt.Sprintf("%s for %s failed: %v", action, user, err), "/hub/admin", nil)
	}
	q := url.Values{"done": {action}, "user": {user}}
	if into != "" {
		q.Set("into", into)
	}
	http.Redirect(w, r, "/hub/admin?"+q.Encode(), http.StatusSeeOther)
	return nil
}
