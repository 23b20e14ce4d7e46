// Command hubgate-entrypoint prepares a user's home for git and starts the
// app. It is the ENTRYPOINT of every hubgate user image
// (/usr/local/bin/hubgate-entrypoint):
//
//	hubgate-entrypoint APP [ARGS...]     set up git, sync the repos, exec APP
//	hubgate-entrypoint credential get    git credential helper (see below)
//
// Set-up, from the environment the gateway gives the container:
//
//   - git config --global user.name/user.email from GIT_AUTHOR_NAME and
//     GIT_AUTHOR_EMAIL (GIT_COMMITTER_* when those are empty);
//   - git config --global credential.<HUBGATE_GIT_URL>.helper names this
//     program's "credential" command, which answers git with the user name
//     x-access-token and the password $GITHUB_TOKEN read from the
//     environment when git asks, and only for HUBGATE_GIT_URL's host. The
//     token is never written to a file, a git config or a remote URL;
//   - each "owner/name" of HUBGATE_REPOS (separated by spaces, commas or
//     newlines) is cloned from HUBGATE_GIT_URL/owner/name.git (default base
//     https://github.com) into ~/repos/name on first start; on later starts
//     it is fetched and fast-forwarded only when that cannot lose anything
//     (see sync.go); what happened to each repo, and why, is appended to
//     ~/repos/.hubgate-sync.log. The entrypoint's own git calls pin the
//     helper list on the command line, so no other helper (a repo's own
//     credential.helper=store, say) is handed the token; the servers of one
//     user, which share the home volume, sync one at a time (an flock on
//     ~/repos/.hubgate-sync.lock).
//
// A repo that cannot be reached, a missing git, or anything else that goes
// wrong during set-up is logged and never stops the app: the program always
// goes on to exec APP (with the same environment), unless APP cannot be
// found. Every git command has a timeout (HUBGATE_GIT_TIMEOUT, default 60s)
// and the whole sync a budget (HUBGATE_SYNC_TIMEOUT, default 90s, below the
// gateway's default start timeout of 2m); repos not reached within it are
// skipped and logged, and synced on a later start.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hubgate/hubgate/spawner/contract"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: hubgate-entrypoint APP [ARGS...] | hubgate-entrypoint credential get|store|erase")
		os.Exit(2)
	}
	if args[0] == "credential" {
		op := ""
		if len(args) > 1 {
			op = args[1]
		}
		if err := credential(op, os.Stdin, os.Stdout, os.Getenv); err != nil {
			fmt.Fprintln(os.Stderr, "hubgate-entrypoint credential:", err)
			os.Exit(1)
		}
		return
	}

	cfg := configFromEnv(os.Getenv)
	if exe, err := os.Executable(); err == nil {
		cfg.Helper = exe
	}
	cfg.Stderr = os.Stderr
	ctx, cancel := context.WithTimeout(context.Background(), cfg.SyncTimeout)
	repos := setup(ctx, cfg)
	cancel()
	writeProvenance(cfg, os.Getenv(contract.Provenance), repos, os.Stdout)

	app, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "hubgate-entrypoint: cannot start %s: %v\n", args[0], err)
		os.Exit(127)
	}
	err = syscall.Exec(app, args, os.Environ())
	fmt.Fprintf(os.Stderr, "hubgate-entrypoint: exec %s: %v\n", app, err)
	os.Exit(126)
}

// config is what the set-up reads from the environment.
type config struct {
	Home        string
	AuthorName  string
	AuthorEmail string
	Repos       []string
	GitURL      string // clone base as given
	TokenValue  string // GITHUB_TOKEN, only to scrub it from anything logged
	GitTimeout  time.Duration
	SyncTimeout time.Duration
	Helper      string // path of this program, for the credential helper
	Stderr      io.Writer
	Git         string   // the git binary; "git" when empty
	GitExtraEnv []string // for tests
}

const defaultGitURL = "https://github.com"

func configFromEnv(getenv func(string) string) config {
	cfg := config{
		Home:        getenv("HOME"),
		AuthorName:  firstNonEmpty(getenv(contract.GitAuthorName), getenv(contract.GitCommitterName)),
		AuthorEmail: firstNonEmpty(getenv(contract.GitAuthorEmail), getenv(contract.GitCommitterEmail)),
		Repos:       splitRepos(getenv(contract.Repos)),
		GitURL:      firstNonEmpty(getenv(contract.GitURL), defaultGitURL),
		TokenValue:  getenv(contract.GitHubToken),
		GitTimeout:  durationEnv(getenv(contract.GitTimeout), 60*time.Second),
		SyncTimeout: durationEnv(getenv(contract.SyncTimeout), 90*time.Second),
		Helper:      "/usr/local/bin/hubgate-entrypoint",
		Stderr:      io.Discard,
	}
	if cfg.Home == "" {
		cfg.Home, _ = os.UserHomeDir()
	}
	for len(cfg.GitURL) > 1 && cfg.GitURL[len(cfg.GitURL)-1] == '/' {
		cfg.GitURL = cfg.GitURL[:len(cfg.GitURL)-1]
	}
	return cfg
}

// durationEnv reads "90s", "2m" or a plain number of seconds.
func durationEnv(v string, def time.Duration) time.Duration {
	if v == "" {
		return def
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d
	}
	var n int
	if _, err := fmt.Sscanf(v, "%d", &n); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return def
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// setup configures git and syncs the repos, and returns what it found of
// each repo afterwards (for the provenance). It never fails: problems are
// logged and the app starts anyway.
func setup(ctx context.Context, cfg config) (states []contract.ProvenanceRepo) {
	lg := newLogger(cfg)
	defer lg.close()
	g := &gitRunner{bin: cfg.Git, timeout: cfg.GitTimeout, home: cfg.Home, extraEnv: cfg.GitExtraEnv}
	if g.bin == "" {
		g.bin = "git"
	}
	// Repos the sync never reached are reported with the reason.
	notSynced := func(why string) []contract.ProvenanceRepo {
		for _, spec := range cfg.Repos {
			states = append(states, contract.ProvenanceRepo{Repo: spec, Sync: why})
		}
		return states
	}
	if _, err := exec.LookPath(g.bin); err != nil {
		lg.printf("-", "git is not installed; git set-up and repo sync skipped")
		return notSynced("not synced: git is not installed")
	}
	dir := filepath.Join(cfg.Home, "repos")
	if len(cfg.Repos) > 0 {
		// The user's servers share the home volume and may start at the
		// same time: one sets up and syncs at a time.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			lg.printf("-", "cannot create %s: %v; repos not synced", dir, err)
			return notSynced("not synced: cannot create ~/repos")
		}
		unlock, err := lockFile(ctx, filepath.Join(dir, ".hubgate-sync.lock"))
		if err != nil {
			lg.printf("-", "repos not synced: %v", err)
			return notSynced("not synced: " + err.Error())
		}
		defer unlock()
	}
	if err := configureGit(ctx, g, cfg); err != nil {
		lg.printf("-", "git config: %v", err)
	}
	if len(cfg.Repos) == 0 {
		return
	}
	base, err := parseGitURL(cfg.GitURL)
	if err != nil {
		lg.printf("-", "HUBGATE_GIT_URL: %v; repos not synced", err)
		return notSynced("not synced: bad HUBGATE_GIT_URL")
	}
	// The entrypoint's own git calls ask this program for the token and
	// nothing else: command-line config comes last, so the empty value
	// drops every helper configured in any file (a repo's own
	// credential.helper=store would otherwise be handed the token).
	g.pre = []string{"-c", "credential.helper=", "-c", "credential." + base + ".helper=" + helperValue(cfg.Helper)}
	// Clones interrupted on an earlier start left these behind.
	if stale, _ := filepath.Glob(filepath.Join(dir, clonePrefix+"*")); len(stale) > 0 {
		for _, p := range stale {
			_ = os.RemoveAll(p)
		}
	}
	lg.printf("-", "syncing %d repo(s) from %s (token: %s)", len(cfg.Repos), base, map[bool]string{true: "set", false: "not set"}[cfg.TokenValue != ""])
	seen := map[string]string{}
	for _, spec := range cfg.Repos {
		if ctx.Err() != nil {
			lg.printf(spec, "skipped: the sync took longer than %s; it is tried again on the next start", cfg.SyncTimeout)
			states = append(states, contract.ProvenanceRepo{Repo: spec, Sync: "skipped: the sync took too long"})
			continue
		}
		owner, name, err := parseRepo(spec)
		if err != nil {
			lg.printf(spec, "skipped: %v", err)
			continue
		}
		if other, ok := seen[name]; ok {
			lg.printf(spec, "skipped: %s is already cloned into ~/repos/%s", other, name)
			states = append(states, contract.ProvenanceRepo{Repo: spec, Sync: "skipped: ~/repos/" + name + " holds " + other})
			continue
		}
		seen[name] = spec
		r := repo{spec: owner + "/" + name, url: base + "/" + owner + "/" + name + ".git", dir: filepath.Join(dir, name), home: cfg.Home}
		outcome := syncRepo(ctx, g, r)
		lg.printf(r.spec, "%s", outcome)
		st := repoState(ctx, g, r.dir)
		st.Repo, st.Sync = r.spec, outcome
		states = append(states, st)
	}
	return states
}

// lockFile takes an exclusive flock on path, waiting until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("another start of this user's servers held %s for the whole sync budget", path)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// configureGit sets the identity and the credential helper in ~/.gitconfig.
func configureGit(ctx context.Context, g *gitRunner, cfg config) error {
	var errs []error
	if cfg.AuthorName != "" {
		if _, err := g.run(ctx, "", "config", "--global", "user.name", cfg.AuthorName); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.AuthorEmail != "" {
		if _, err := g.run(ctx, "", "config", "--global", "user.email", cfg.AuthorEmail); err != nil {
			errs = append(errs, err)
		}
	}
	base, err := parseGitURL(cfg.GitURL)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	// The helper is scoped to the clone host. Its list is reset first (an
	// empty value) so that no helper configured before it, such as
	// "store", is asked to keep the token; then this program answers.
	key := "credential." + base + ".helper"
	if _, err := g.run(ctx, "", "config", "--global", "--unset-all", key); err != nil && !isExit(err, 5) {
		errs = append(errs, err)
	}
	if _, err := g.run(ctx, "", "config", "--global", "--add", key, ""); err != nil {
		errs = append(errs, err)
	}
	if _, err := g.run(ctx, "", "config", "--global", "--add", key, helperValue(cfg.Helper)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// helperValue is the credential.helper value that runs this program.
func helperValue(exe string) string {
	return "!" + shellQuote(exe) + " credential"
}

func isExit(err error, code int) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() == code
}

// shellQuote quotes s for sh, which runs "!" helpers.
func shellQuote(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, `'\''`...)
		} else {
			out = append(out, s[i])
		}
	}
	return string(append(out, '\''))
}

// credential answers git's credential protocol (gitcredentials(7)): for
// "get" of the clone host it prints the token from the environment; it
// stores and erases nothing.
func credential(op string, in io.Reader, out io.Writer, getenv func(string) string) error {
	attrs := map[string]string{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		if k, v, ok := cut(line, '='); ok {
			attrs[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if op != "get" {
		return nil // store, erase: nothing is kept anywhere
	}
	token := getenv(contract.GitHubToken)
	if token == "" {
		return nil
	}
	base, err := parseGitURL(firstNonEmpty(getenv(contract.GitURL), defaultGitURL))
	if err != nil {
		return nil
	}
	scheme, host := schemeHost(base)
	if attrs["protocol"] != scheme || !sameHost(attrs["host"], host, scheme) {
		return nil
	}
	_, err = fmt.Fprintf(out, "username=x-access-token\npassword=%s\n", token)
	return err
}

func cut(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
