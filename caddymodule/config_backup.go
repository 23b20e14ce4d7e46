package caddymodule

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/hubgate/hubgate/caddymodule/backup"
)

// BackupConfig turns on backups of every user's home with restic, the
// storage quotas' measurements and offboarding (the policy's retention).
// Backups run in short-lived helper containers that mount a home
// read-only, so running servers keep running. Without this block nothing
// is backed up, homes are not measured, and no home is ever deleted.
type BackupConfig struct {
	// Repository is the restic repository: an absolute path on the
	// engine's host (created and initialised if missing), or a restic
	// repository URL such as "s3:https://s3.example.org/bucket/hub".
	// Required.
	Repository string `json:"repository,omitempty"`

	// PasswordFile is a file holding the repository's password. It is
	// mounted read-only into the helper containers; the password is never
	// in the Caddyfile, a container's environment or a log. One of
	// password_file and password_env is required.
	PasswordFile string `json:"password_file,omitempty"`

	// PasswordEnv names an environment variable of the gateway holding
	// the password; hubgate copies it into a file only it can read and
	// mounts that.
	PasswordEnv string `json:"password_env,omitempty"`

	// CredentialsFile is an AWS shared-credentials file for an S3
	// repository, mounted read-only into the helpers.
	CredentialsFile string `json:"credentials_file,omitempty"`

	// Every is how often every home is backed up. Default: 6h.
	Every caddy.Duration `json:"every,omitempty"`

	// KeepDaily is how many daily snapshots restic keeps per home
	// (besides the last day's and the final ones). 0 with KeepWeekly 0
	// keeps every snapshot. Default: 14.
	KeepDaily *int `json:"keep_daily,omitempty"`

	// KeepWeekly is how many weekly snapshots are kept. Default: 8.
	KeepWeekly *int `json:"keep_weekly,omitempty"`

	// UsageEvery is how often each home's size is measured (for the home
	// and admin pages, the metrics and the storage quotas). Default: 15m.
	UsageEvery caddy.Duration `json:"usage_every,omitempty"`

	// CheckEvery is how often the retention clocks are looked at.
	// Default: 1m.
	CheckEvery caddy.Duration `json:"check_every,omitempty"`

	// Image is the helper image (restic and hubgate's backup helper).
	// Default: "hubgate/restic:latest" (images/restic).
	Image string `json:"image,omitempty"`

	// Timeout bounds one restic run. Default: 1h.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validate checks the block without side effects.
func (b *BackupConfig) validate() error {
	if b.Repository == "" {
		return errors.New("hubgate: backup: repository is required (an absolute path or a restic URL such as s3:https://host/bucket)")
	}
	if !filepath.IsAbs(b.Repository) && !strings.Contains(b.Repository, ":") {
		return fmt.Errorf("hubgate: backup: repository %q must be an absolute path or a restic URL", b.Repository)
	}
	if (b.PasswordFile == "") == (b.PasswordEnv == "") {
		return errors.New("hubgate: backup: set exactly one of password_file and password_env (the password never goes in the Caddyfile)")
	}
	if b.PasswordEnv != "" && !envNameRE.MatchString(b.PasswordEnv) {
		return fmt.Errorf("hubgate: backup: password_env %q is not a variable name", b.PasswordEnv)
	}
	if b.Every < 0 || b.UsageEvery < 0 || b.CheckEvery < 0 || b.Timeout < 0 {
		return errors.New("hubgate: backup: durations must not be negative")
	}
	if (b.KeepDaily != nil && *b.KeepDaily < 0) || (b.KeepWeekly != nil && *b.KeepWeekly < 0) {
		return errors.New("hubgate: backup: keep_daily and keep_weekly must not be negative")
	}
	return nil
}

// config is the manager's configuration.
func (b *BackupConfig) config() backup.Config {
	daily, weekly := 14, 8
	if b.KeepDaily != nil {
		daily = *b.KeepDaily
	}
	if b.KeepWeekly != nil {
		weekly = *b.KeepWeekly
	}
	return backup.Config{
		Repository: b.Repository, PasswordFile: b.PasswordFile, PasswordEnv: b.PasswordEnv,
		CredentialsFile: b.CredentialsFile,
		Every:           time.Duration(b.Every), UsageEvery: time.Duration(b.UsageEvery), CheckEvery: time.Duration(b.CheckEvery),
		KeepDaily: daily, KeepWeekly: weekly, Image: b.Image, Timeout: time.Duration(b.Timeout),
	}
}

// unmarshalBackup reads the backup block:
//
//	backup {
//		repository <path-or-url>
//		password_file <file>      # or: password_env <VARIABLE>
//		credentials_file <file>   # S3 only
//		every <duration>          # default 6h
//		keep_daily <n>            # default 14
//		keep_weekly <n>           # default 8
//		usage_every <duration>    # default 15m
//		check_every <duration>    # default 1m
//		image <image>             # default hubgate/restic:latest
//		timeout <duration>        # default 1h
//	}
func (h *Handler) unmarshalBackup(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	if h.Backup == nil {
		h.Backup = new(BackupConfig)
	}
	b := h.Backup
	for d.NextBlock(1) {
		name := d.Val()
		var v string
		if !d.AllArgs(&v) {
			return d.ArgErr()
		}
		switch name {
		case "repository":
			b.Repository = v
		case "password_file":
			b.PasswordFile = v
		case "password_env":
			b.PasswordEnv = v
		case "credentials_file":
			b.CredentialsFile = v
		case "image":
			b.Image = v
		case "every", "usage_every", "check_every", "timeout":
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("backup %s: %v", name, err)
			}
			switch name {
			case "every":
				b.Every = caddy.Duration(dur)
			case "usage_every":
				b.UsageEvery = caddy.Duration(dur)
			case "check_every":
				b.CheckEvery = caddy.Duration(dur)
			case "timeout":
				b.Timeout = caddy.Duration(dur)
			}
		case "keep_daily", "keep_weekly":
			n, err := strconv.Atoi(v)
			if err != nil {
				return d.Errf("backup %s: %v", name, err)
			}
			if name == "keep_daily" {
				b.KeepDaily = &n
			} else {
				b.KeepWeekly = &n
			}
		default:
			return d.Errf("unrecognized backup option %q", name)
		}
	}
	return nil
}
