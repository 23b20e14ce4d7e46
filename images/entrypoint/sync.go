package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// gitRunner runs git with a timeout per call, never prompting.
type gitRunner struct {
	bin      string
	timeout  time.Duration
	home     string
	extraEnv []string
	// pre goes before every command: it pins the credential helpers of
	// the entrypoint's own git calls (see setup).
	pre []string
}

func (g *gitRunner) run(ctx context.Context, dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.bin, append(append([]string(nil), g.pre...), args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+g.home,
		"LC_ALL=C",
		"GIT_TERMINAL_PROMPT=0", // fail instead of asking for a password
		"GIT_ASKPASS=",
		"SSH_ASKPASS=",
		"GCM_INTERACTIVE=never",
		"GIT_SSH_COMMAND=ssh -o BatchMode=yes",
	)
	cmd.Env = append(cmd.Env, g.extraEnv...)
	// git runs helpers (git-remote-https, the credential helper) as
	// children: on timeout the whole process group goes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("git %s: timed out after %s", args[0], g.timeout)
			if parent := context.Cause(ctx); parent != nil && !errors.Is(parent, context.DeadlineExceeded) {
				err = fmt.Errorf("git %s: %w", args[0], parent)
			}
			return text, err
		}
		return text, &gitError{args: args, out: text, err: err}
	}
	return text, nil
}

type gitError struct {
	args []string
	out  string
	err  error
}

func (e *gitError) Error() string {
	msg := lastLines(e.out, 3)
	if msg == "" {
		msg = e.err.Error()
	}
	return "git " + e.args[0] + ": " + msg
}

func (e *gitError) Unwrap() error { return e.err }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// repo is one entry of HUBGATE_REPOS.
type repo struct {
	spec string // owner/name
	url  string // clone URL, never with credentials
	dir  string // ~/repos/name
	home string
}

// syncRepo clones or updates one repo and says what it did and why.
func syncRepo(ctx context.Context, g *gitRunner, r repo) string {
	fi, err := os.Lstat(r.dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return clone(ctx, g, r)
	case err != nil:
		return fmt.Sprintf("skipped: %v", err)
	case !fi.IsDir():
		return fmt.Sprintf("left alone: %s exists and is not a directory", tilde(r.home, r.dir))
	}
	if _, err := os.Lstat(filepath.Join(r.dir, ".git")); err != nil {
		if entries, rerr := os.ReadDir(r.dir); rerr == nil && len(entries) == 0 {
			return clone(ctx, g, r)
		}
		return fmt.Sprintf("left alone: %s is not a git repository", tilde(r.home, r.dir))
	}
	return update(ctx, g, r)
}

const clonePrefix = ".hubgate-clone-"

// clone clones into a temporary directory next to the target and renames
// it into place, so an interrupted clone never leaves a half repo behind.
func clone(ctx context.Context, g *gitRunner, r repo) string {
	parent := filepath.Dir(r.dir)
	tmp, err := os.MkdirTemp(parent, clonePrefix+filepath.Base(r.dir)+"-")
	if err != nil {
		return fmt.Sprintf("not cloned: %v", err)
	}
	defer os.RemoveAll(tmp)
	if _, err := g.run(ctx, parent, "clone", "--quiet", "--", r.url, tmp); err != nil {
		return fmt.Sprintf("not cloned from %s: %v", r.url, err)
	}
	_ = os.Remove(r.dir) // an empty directory that was there
	if err := os.Rename(tmp, r.dir); err != nil {
		return fmt.Sprintf("not cloned: %v", err)
	}
	branch, _ := g.run(ctx, r.dir, "symbolic-ref", "--quiet", "--short", "HEAD")
	head, _ := g.run(ctx, r.dir, "rev-parse", "--short", "HEAD")
	if head == "" || strings.HasPrefix(head, "HEAD") {
		return fmt.Sprintf("cloned from %s into %s (empty repository)", r.url, tilde(r.home, r.dir))
	}
	return fmt.Sprintf("cloned from %s into %s (branch %s at %s)", r.url, tilde(r.home, r.dir), branch, head)
}

// update fetches origin and fast-forwards the current branch when, and
// only when, that cannot lose anything: no operation in progress, the
// branch strictly behind its upstream (a diverged branch is left alone),
// and no uncommitted change, untracked or ignored file in the way of the
// incoming commits. Local changes to files the incoming commits do not
// touch are kept, as `git merge --ff-only` keeps them; git itself refuses
// to overwrite modified or untracked files, and the check before it
// covers ignored files, which git would overwrite.
func update(ctx context.Context, g *gitRunner, r repo) string {
	gitDir, err := g.run(ctx, r.dir, "rev-parse", "--absolute-git-dir")
	if err != nil {
		return fmt.Sprintf("left alone: %v", err)
	}
	for _, f := range []string{"MERGE_HEAD", "rebase-merge", "rebase-apply", "CHERRY_PICK_HEAD", "REVERT_HEAD", "BISECT_LOG"} {
		if _, err := os.Lstat(filepath.Join(gitDir, f)); err == nil {
			return fmt.Sprintf("left alone: a %s is in progress; finish or abort it", inProgress(f))
		}
	}
	origin, _ := g.run(ctx, r.dir, "config", "--get", "remote.origin.url")
	if !sameRemote(origin, r.url) {
		return fmt.Sprintf("left alone: its origin is %q, not %s", origin, r.url)
	}
	if _, err := g.run(ctx, r.dir, "fetch", "--quiet", "--prune", "origin"); err != nil {
		return fmt.Sprintf("not updated: fetch from %s failed: %v", r.url, err)
	}
	branch, err := g.run(ctx, r.dir, "symbolic-ref", "--quiet", "--short", "HEAD")
	if err != nil {
		return "fetched; not updated: HEAD is detached (check out a branch to get updates)"
	}
	upstream, err := g.run(ctx, r.dir, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}")
	if err != nil {
		return fmt.Sprintf("fetched; not updated: branch %s has no upstream branch", branch)
	}
	counts, err := g.run(ctx, r.dir, "rev-list", "--left-right", "--count", "HEAD...@{upstream}")
	if err != nil {
		return fmt.Sprintf("fetched; not updated: %v", err)
	}
	var ahead, behind int
	if _, err := fmt.Sscanf(counts, "%d %d", &ahead, &behind); err != nil {
		return fmt.Sprintf("fetched; not updated: cannot read %q", counts)
	}
	switch {
	case behind == 0 && ahead == 0:
		return fmt.Sprintf("up to date (branch %s)", branch)
	case behind == 0:
		return fmt.Sprintf("up to date (branch %s has %d local commit(s) not pushed)", branch, ahead)
	case ahead > 0:
		return fmt.Sprintf("left alone: branch %s has diverged from %s (%d local, %d upstream commit(s)); merge or rebase it yourself", branch, upstream, ahead, behind)
	}
	if blocked, err := inTheWay(ctx, g, r.dir); err != nil {
		return fmt.Sprintf("fetched; not updated: %v", err)
	} else if blocked != "" {
		return fmt.Sprintf("fetched; not updated: the %d new commit(s) of %s add %s, which is already in your working tree (untracked or ignored); move it away, then git pull", behind, upstream, blocked)
	}
	dirty, _ := g.run(ctx, r.dir, "status", "--porcelain", "--untracked-files=no")
	if _, err := g.run(ctx, r.dir, "merge", "--ff-only", "--quiet", "@{upstream}"); err != nil {
		return fmt.Sprintf("fetched; not updated: %d new commit(s) of %s would touch your uncommitted changes (%v); commit or stash them, then git pull", behind, upstream, err)
	}
	head, _ := g.run(ctx, r.dir, "rev-parse", "--short", "HEAD")
	msg := fmt.Sprintf("fast-forwarded branch %s by %d commit(s) to %s", branch, behind, head)
	if dirty != "" {
		msg += "; your uncommitted changes are kept"
	}
	return msg
}

// inTheWay returns a path that the incoming commits add and that already
// exists in the working tree (or whose parent exists as a file), if any.
func inTheWay(ctx context.Context, g *gitRunner, dir string) (string, error) {
	out, err := g.run(ctx, dir, "diff", "--name-status", "--no-renames", "-z", "HEAD", "@{upstream}")
	if err != nil {
		return "", err
	}
	fields := strings.Split(strings.TrimRight(out, "\x00"), "\x00")
	deleted := map[string]bool{}
	var added []string
	for i := 0; i+1 < len(fields); i += 2 {
		status, path := fields[i], fields[i+1]
		switch {
		case strings.HasPrefix(status, "A"):
			added = append(added, path)
		case strings.HasPrefix(status, "D"):
			deleted[path] = true
		}
	}
	for _, p := range added {
		if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(p))); err == nil {
			return p, nil
		}
		for d := filepath.Dir(p); d != "." && d != "/"; d = filepath.Dir(d) {
			fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(d)))
			if err == nil && !fi.IsDir() && !deleted[filepath.ToSlash(d)] {
				return d, nil
			}
		}
	}
	return "", nil
}

func inProgress(f string) string {
	switch f {
	case "MERGE_HEAD":
		return "merge"
	case "rebase-merge", "rebase-apply":
		return "rebase"
	case "CHERRY_PICK_HEAD":
		return "cherry-pick"
	case "REVERT_HEAD":
		return "revert"
	}
	return "bisect"
}

func sameRemote(a, b string) bool {
	norm := func(s string) string {
		s = strings.TrimSuffix(strings.TrimRight(strings.TrimSpace(s), "/"), ".git")
		return strings.ToLower(s)
	}
	return norm(a) == norm(b)
}

// tilde shows a path under home as ~/...
func tilde(home, p string) string {
	if home != "" {
		if rel, err := filepath.Rel(home, p); err == nil && !strings.HasPrefix(rel, "..") {
			return "~/" + filepath.ToSlash(rel)
		}
	}
	return p
}

// parseGitURL checks the clone base: http(s) or file, no credentials.
func parseGitURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("not a URL: %q", s)
	}
	switch u.Scheme {
	case "https", "http":
		if u.Host == "" {
			return "", fmt.Errorf("%q has no host", s)
		}
	case "file":
	default:
		return "", fmt.Errorf("%q: only https, http and file URLs are supported", s)
	}
	if u.User != nil {
		return "", errors.New("it must not contain credentials (the token comes from GITHUB_TOKEN)")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q must not have a query or fragment", s)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), nil
}

func schemeHost(base string) (string, string) {
	u, err := url.Parse(base)
	if err != nil {
		return "", ""
	}
	return u.Scheme, u.Host
}

// sameHost compares git's host attribute (host or host:port) with the
// clone URL's host, treating the scheme's default port as absent.
func sameHost(a, b, scheme string) bool {
	norm := func(h string) string {
		h = strings.ToLower(h)
		switch {
		case scheme == "https" && strings.HasSuffix(h, ":443"):
			h = strings.TrimSuffix(h, ":443")
		case scheme == "http" && strings.HasSuffix(h, ":80"):
			h = strings.TrimSuffix(h, ":80")
		}
		return h
	}
	return a != "" && norm(a) == norm(b)
}

var repoPart = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// parseRepo reads "owner/name" (a trailing ".git" is dropped).
func parseRepo(spec string) (owner, name string, err error) {
	parts := strings.Split(spec, "/")
	if len(parts) != 2 {
		return "", "", fmt.Errorf("%q is not owner/name", spec)
	}
	owner, name = parts[0], strings.TrimSuffix(parts[1], ".git")
	for _, p := range []string{owner, name} {
		if !repoPart.MatchString(p) || p == "." || p == ".." {
			return "", "", fmt.Errorf("%q is not owner/name", spec)
		}
	}
	if strings.HasPrefix(strings.ToLower(name), ".hubgate") {
		return "", "", fmt.Errorf("%q: names starting with .hubgate are reserved", spec)
	}
	return owner, name, nil
}

// splitRepos splits HUBGATE_REPOS on spaces, commas and newlines.
func splitRepos(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
}

// syncLogName is the log the user can read, in ~/repos.
const syncLogName = ".hubgate-sync.log"

// logger writes one line per event to stderr (the container's log) and,
// when repos are configured, to ~/repos/.hubgate-sync.log. The token is
// never written: any occurrence is replaced.
type logger struct {
	stderr io.Writer
	path   string
	token  string
	f      *os.File
}

func newLogger(cfg config) *logger {
	lg := &logger{stderr: cfg.Stderr, token: cfg.TokenValue}
	if lg.stderr == nil {
		lg.stderr = io.Discard
	}
	if len(cfg.Repos) > 0 {
		lg.path = filepath.Join(cfg.Home, "repos", syncLogName)
	}
	return lg
}

func (lg *logger) printf(what, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if lg.token != "" {
		msg = strings.ReplaceAll(msg, lg.token, "[token]")
	}
	line := time.Now().UTC().Format(time.RFC3339) + " " + what + ": " + msg + "\n"
	fmt.Fprint(lg.stderr, "hubgate-entrypoint: "+what+": "+msg+"\n")
	if lg.path == "" {
		return
	}
	if lg.f == nil {
		if err := os.MkdirAll(filepath.Dir(lg.path), 0o755); err != nil {
			return
		}
		// Keep the log small: past 1 MiB the old one becomes .1.
		if fi, err := os.Stat(lg.path); err == nil && fi.Size() > 1<<20 {
			_ = os.Rename(lg.path, lg.path+".1")
		}
		f, err := os.OpenFile(lg.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(lg.stderr, "hubgate-entrypoint: cannot write %s: %v\n", lg.path, err)
			lg.path = ""
			return
		}
		lg.f = f
	}
	_, _ = lg.f.WriteString(line)
}

func (lg *logger) close() {
	if lg.f != nil {
		_ = lg.f.Close()
	}
}
