package pages

import (
	"fmt"
	"net/http"
	"time"
)

// SizeText renders a size for people: "0 B", "812 KiB", "1.4 GiB".
func SizeText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// StorageView is a home's size and quota, for the home, progress and
// admin pages.
type StorageView struct {
	// Measured says the home has been measured.
	Measured bool
	// Used, Soft and Hard are rendered sizes ("" for no limit).
	Used, Soft, Hard string
	At               time.Time
	OverSoft         bool
	OverHard         bool
}

// SnapshotView is one snapshot of a user's home.
type SnapshotView struct {
	ID, Short string
	Time      time.Time
	Size      string
	Final     bool
}

// HomeBackup is what the home page shows of backups: the user's
// snapshots and the restore form, and the result of the last restore.
type HomeBackup struct {
	Snapshots []SnapshotView
	// Notice is the last action's result; Problem marks it a failure.
	Notice  string
	Problem bool
}

// AdminBackup is the admin page's backups and storage section.
type AdminBackup struct {
	Repository string
	Every      string
	LastRound  time.Time
	Retention  string
	Rows       []BackupRow
	Pending    []PendingView
	Notice     string
	Problem    bool
}

// BackupRow is one user's home on the admin page.
type BackupRow struct {
	User      string
	Storage   StorageView
	Last      *SnapshotView
	Failure   string
	FailedAt  time.Time
	Deleted   *SnapshotView
	Snapshots []SnapshotView
}

// PendingView is a home waiting for deletion.
type PendingView struct {
	User         string
	MissingSince time.Time
	// Deadline is zero when homes are kept forever; Countdown renders
	// the time left.
	Deadline  time.Time
	Countdown string
}

// QuotaPage explains a start refused over the hard quota.
type QuotaPage struct {
	Frame
	Server  string
	Used    string
	Hard    string
	Delete  string
	Largest []FolderView
	At      time.Time
}

// FolderView is one of the largest folders of a home.
type FolderView struct {
	Path, Size string
}

// Quota renders the page of a start refused over the hard quota (507).
func (p *Renderer) Quota(w http.ResponseWriter, d QuotaPage) error {
	return p.render(w, http.StatusInsufficientStorage, "quota", d)
}
