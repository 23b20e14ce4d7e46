package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// helperBin is this program built as it ships (without -race, whose
// start-up costs a second a call here): git runs it as the credential
// helper, and the exec tests run it as the entrypoint.
var helperBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hubgate-entrypoint-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helperBin = filepath.Join(dir, "hubgate-entrypoint")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(gobin, "build", "-o", helperBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building hubgate-entrypoint for the tests: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const token = "ghp_TESTtoken0123456789abcdefXYZ"

func TestCredentialAnswersOnlyTheCloneHost(t *testing.T) {
	env := map[string]string{"GITHUB_TOKEN": token, "HUBGATE_GIT_URL": "https://git.example.org:8443/base"}
	getenv := func(k string) string { return env[k] }
	cases := []struct {
		op, in string
		want   bool
	}{
		{"get", "protocol=https\nhost=git.example.org:8443\npath=o/r.git\n\n", true},
		{"get", "protocol=https\nhost=GIT.example.org:8443\n", true},
		{"get", "protocol=http\nhost=git.example.org:8443\n\n", false}, // not over plain http
		{"get", "protocol=https\nhost=git.example.org\n\n", false},     // other port
		{"get", "protocol=https\nhost=evil.example.org:8443\n\n", false},
		{"get", "protocol=https\n\n", false},
		{"store", "protocol=https\nhost=git.example.org:8443\nusername=x\npassword=y\n\n", false},
		{"erase", "protocol=https\nhost=git.example.org:8443\n\n", false},
	}
	for _, c := range cases {
		var out bytes.Buffer
		if err := credential(c.op, strings.NewReader(c.in), &out, getenv); err != nil {
			t.Fatalf("%s %q: %v", c.op, c.in, err)
		}
		got := out.String()
		if c.want && got != "username=x-access-token\npassword="+token+"\n" {
			t.Errorf("%s %q: got %q, want the token", c.op, c.in, got)
		}
		if !c.want && got != "" {
			t.Errorf("%s %q: got %q, want nothing", c.op, c.in, got)
		}
	}
	// The default base is https://github.com; its default port is the same host.
	env = map[string]string{"GITHUB_TOKEN": token}
	for _, host := range []string{"github.com", "github.com:443"} {
		var out bytes.Buffer
		_ = credential("get", strings.NewReader("protocol=https\nhost="+host+"\n\n"), &out, getenv)
		if !strings.Contains(out.String(), "password="+token) {
			t.Errorf("default base, host %s: %q", host, out.String())
		}
	}
	// No token, no answer.
	env = map[string]string{}
	var out bytes.Buffer
	_ = credential("get", strings.NewReader("protocol=https\nhost=github.com\n\n"), &out, getenv)
	if out.Len() != 0 {
		t.Errorf("without a token: %q", out.String())
	}
}

func TestParsing(t *testing.T) {
	if got := splitRepos(" a/b,c/d\n  e/f.git\t"); strings.Join(got, "|") != "a/b|c/d|e/f.git" {
		t.Errorf("splitRepos: %q", got)
	}
	for _, bad := range []string{"a", "a/b/c", "../x", "a/..", "a/.", "a/b c", "a/.hubgate-sync.log", "/b", "a/", "a/b;rm"} {
		if _, _, err := parseRepo(bad); err == nil {
			t.Errorf("parseRepo(%q) accepted", bad)
		}
	}
	if o, n, err := parseRepo("Praekelt/analysis.git"); err != nil || o != "Praekelt" || n != "analysis" {
		t.Errorf("parseRepo: %s %s %v", o, n, err)
	}
	for _, bad := range []string{"https://user:tok@github.com", "ssh://git@github.com", "github.com", "https://github.com/?x=1", "https:///x"} {
		if _, err := parseGitURL(bad); err == nil {
			t.Errorf("parseGitURL(%q) accepted", bad)
		}
	}
	if u, err := parseGitURL("https://github.com/"); err != nil || u != "https://github.com" {
		t.Errorf("parseGitURL: %q %v", u, err)
	}
	cfg := configFromEnv(func(k string) string {
		return map[string]string{"HOME": "/h", "GIT_COMMITTER_NAME": "C", "GIT_AUTHOR_EMAIL": "a@x", "HUBGATE_GIT_TIMEOUT": "7", "HUBGATE_SYNC_TIMEOUT": "2m"}[k]
	})
	if cfg.AuthorName != "C" || cfg.AuthorEmail != "a@x" || cfg.GitURL != defaultGitURL || cfg.GitTimeout != 7*time.Second || cfg.SyncTimeout != 2*time.Minute {
		t.Errorf("configFromEnv: %+v", cfg)
	}
}

// gitServer serves bare repositories under root with git http-backend,
// like GitHub does: anonymous requests get 401, and only the password
// token (any user name) is accepted.
type gitServer struct {
	root string
	url  string
	hang chan struct{} // closed to release hanging requests
	mu   sync.Mutex
	auth []string // "user:ok|bad|none" per request
}

func newGitServer(t *testing.T) *gitServer {
	t.Helper()
	backend := filepath.Join(gitExecPath(t), "git-http-backend")
	s := &gitServer{root: t.TempDir(), hang: make(chan struct{})}
	h := &cgi.Handler{
		Path: backend,
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + s.root, "GIT_HTTP_EXPORT_ALL=1"},
		// "Not a git repository" for the missing repo is expected.
		Stderr: io.Discard,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow/") {
			<-s.hang
			http.Error(w, "gone", http.StatusServiceUnavailable)
			return
		}
		user, pass, ok := r.BasicAuth()
		switch {
		case !ok:
			s.record("none")
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		case subtle.ConstantTimeCompare([]byte(pass), []byte(token)) != 1:
			s.record(user + ":bad")
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		s.record(user + ":ok")
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { close(s.hang); srv.Close() })
	s.url = srv.URL
	return s
}

func (s *gitServer) record(a string) {
	s.mu.Lock()
	s.auth = append(s.auth, a)
	s.mu.Unlock()
}

func gitExecPath(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("these tests need git: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// upstream is a bare repo on the server and a work tree that pushes to it.
type upstream struct {
	bare, work string
}

func (s *gitServer) newRepo(t *testing.T, spec string, files map[string]string) *upstream {
	t.Helper()
	u := &upstream{bare: filepath.Join(s.root, spec+".git"), work: t.TempDir()}
	git(t, "", "init", "--quiet", "--bare", "--initial-branch=main", u.bare)
	git(t, u.work, "init", "--quiet", "--initial-branch=main")
	git(t, u.work, "remote", "add", "origin", u.bare)
	u.commit(t, "first", files)
	return u
}

func (u *upstream) commit(t *testing.T, msg string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(u.work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(t, u.work, "add", "-A", "-f")
	git(t, u.work, "commit", "--quiet", "-m", msg)
	git(t, u.work, "push", "--quiet", "origin", "main")
}

// git runs git for the test's own set-up, isolated from the machine's config.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Up Stream", "GIT_AUTHOR_EMAIL=up@example.org",
		"GIT_COMMITTER_NAME=Up Stream", "GIT_COMMITTER_EMAIL=up@example.org")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// userGit runs git as the user would in the container (their home).
func userGit(t *testing.T, home, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// testConfig is what the container would get from the gateway.
func testConfig(t *testing.T, home, gitURL string, repos ...string) config {
	return config{
		Home:        home,
		AuthorName:  "Alice Researcher",
		AuthorEmail: "alice@example.org",
		Repos:       repos,
		GitURL:      gitURL,
		TokenValue:  token,
		GitTimeout:  20 * time.Second,
		SyncTimeout: 60 * time.Second,
		Helper:      helperBin,
		Stderr:      &bytes.Buffer{},
		GitExtraEnv: []string{
			"GIT_CONFIG_NOSYSTEM=1",
			"GITHUB_TOKEN=" + token,
			"HUBGATE_GIT_URL=" + gitURL,
		},
	}
}

func runSetup(t *testing.T, cfg config) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.SyncTimeout)
	defer cancel()
	setup(ctx, cfg)
	return readLog(t, cfg.Home)
}

func readLog(t *testing.T, home string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(home, "repos", syncLogName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// lastLine returns the last log line about spec.
func lastLine(log, spec string) string {
	var last string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, " "+spec+": ") {
			last = l
		}
	}
	return last
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, p, body string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// noTokenIn fails if any file under dir contains the token.
func noTokenIn(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(token)) {
			t.Errorf("%s contains the token", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCloneThenFastForwardKeepingLocalWork(t *testing.T) {
	t.Parallel()
	srv := newGitServer(t)
	up := srv.newRepo(t, "team/analysis", map[string]string{"README.md": "v1\n", "notes.txt": "n1\n", ".gitignore": "*.csv\n"})
	home := t.TempDir()
	cfg := testConfig(t, home, srv.url, "team/analysis")
	clone := filepath.Join(home, "repos", "analysis")

	// First start: cloned with the token, identity configured.
	log := runSetup(t, cfg)
	if !strings.Contains(lastLine(log, "team/analysis"), "cloned from "+srv.url+"/team/analysis.git") {
		t.Fatalf("first start:\n%s", log)
	}
	if got := readFile(t, filepath.Join(clone, "README.md")); got != "v1\n" {
		t.Fatalf("README after clone: %q", got)
	}
	if got := userGit(t, home, clone, "config", "user.email"); got != "alice@example.org" {
		t.Errorf("user.email %q", got)
	}
	if got := userGit(t, home, clone, "config", "user.name"); got != "Alice Researcher" {
		t.Errorf("user.name %q", got)
	}
	if got := userGit(t, home, clone, "remote", "get-url", "origin"); got != srv.url+"/team/analysis.git" {
		t.Errorf("origin %q: must be the plain URL", got)
	}
	srv.mu.Lock()
	auth := strings.Join(srv.auth, " ")
	srv.mu.Unlock()
	if !strings.Contains(auth, "x-access-token:ok") {
		t.Errorf("the server never saw the token: %s", auth)
	}

	// Nothing new: up to date.
	log = runSetup(t, cfg)
	if !strings.Contains(lastLine(log, "team/analysis"), "up to date (branch main)") {
		t.Fatalf("second start:\n%s", log)
	}

	// A new upstream commit arrives; a local uncommitted edit of another
	// file and an untracked file survive.
	up.commit(t, "second", map[string]string{"README.md": "v2\n"})
	writeFile(t, filepath.Join(clone, "notes.txt"), "my local edit\n")
	writeFile(t, filepath.Join(clone, "scratch.py"), "print(1)\n")
	log = runSetup(t, cfg)
	if l := lastLine(log, "team/analysis"); !strings.Contains(l, "fast-forwarded branch main by 1 commit(s)") || !strings.Contains(l, "uncommitted changes are kept") {
		t.Fatalf("after an upstream commit:\n%s", log)
	}
	if got := readFile(t, filepath.Join(clone, "README.md")); got != "v2\n" {
		t.Errorf("README not updated: %q", got)
	}
	if got := readFile(t, filepath.Join(clone, "notes.txt")); got != "my local edit\n" {
		t.Errorf("local edit lost: %q", got)
	}
	if got := readFile(t, filepath.Join(clone, "scratch.py")); got != "print(1)\n" {
		t.Errorf("untracked file lost: %q", got)
	}

	// Upstream changes the file the user edited: not updated, edit kept.
	up.commit(t, "third", map[string]string{"notes.txt": "n2\n"})
	log = runSetup(t, cfg)
	if l := lastLine(log, "team/analysis"); !strings.Contains(l, "not updated") || !strings.Contains(l, "uncommitted changes") {
		t.Fatalf("conflicting upstream change:\n%s", log)
	}
	if got := readFile(t, filepath.Join(clone, "notes.txt")); got != "my local edit\n" {
		t.Errorf("local edit lost: %q", got)
	}
	userGit(t, home, clone, "checkout", "--", "notes.txt") // the user drops the edit...
	log = runSetup(t, cfg)                                 // ...and the next start catches up
	if l := lastLine(log, "team/analysis"); !strings.Contains(l, "fast-forwarded branch main by 1 commit(s)") {
		t.Fatalf("after dropping the edit:\n%s", log)
	}

	// Upstream adds a file the user has locally, ignored (*.csv): git would
	// overwrite it; the entrypoint does not let it.
	writeFile(t, filepath.Join(clone, "data.csv"), "precious local data\n")
	up.commit(t, "data", map[string]string{"data.csv": "upstream data\n"})
	log = runSetup(t, cfg)
	if l := lastLine(log, "team/analysis"); !strings.Contains(l, "add data.csv, which is already in your working tree") {
		t.Fatalf("ignored file in the way:\n%s", log)
	}
	if got := readFile(t, filepath.Join(clone, "data.csv")); got != "precious local data\n" {
		t.Fatalf("ignored local file overwritten: %q", got)
	}
	os.Remove(filepath.Join(clone, "data.csv"))
	runSetup(t, cfg)

	// A local commit and an upstream commit: diverged, left alone.
	writeFile(t, filepath.Join(clone, "mine.txt"), "local commit\n")
	userGit(t, home, clone, "add", "mine.txt")
	userGit(t, home, clone, "commit", "--quiet", "-m", "mine")
	localHead := userGit(t, home, clone, "rev-parse", "HEAD")
	up.commit(t, "theirs", map[string]string{"theirs.txt": "x\n"})
	log = runSetup(t, cfg)
	if l := lastLine(log, "team/analysis"); !strings.Contains(l, "left alone: branch main has diverged from origin/main (1 local, 1 upstream commit(s))") {
		t.Fatalf("diverged:\n%s", log)
	}
	if got := userGit(t, home, clone, "rev-parse", "HEAD"); got != localHead {
		t.Errorf("diverged branch moved from %s to %s", localHead, got)
	}

	// Local commits only: up to date, nothing pushed.
	userGit(t, home, clone, "reset", "--quiet", "--hard", "origin/main")
	writeFile(t, filepath.Join(clone, "mine.txt"), "local commit\n")
	userGit(t, home, clone, "add", "mine.txt")
	userGit(t, home, clone, "commit", "--quiet", "-m", "mine")
	log = runSetup(t, cfg)
	if l := lastLine(log, "team/analysis"); !strings.Contains(l, "1 local commit(s) not pushed") {
		t.Fatalf("ahead:\n%s", log)
	}

	// A merge in progress and a detached HEAD are left alone.
	gitDir := filepath.Join(clone, ".git")
	writeFile(t, filepath.Join(gitDir, "MERGE_HEAD"), localHead+"\n")
	if l := lastLine(runSetup(t, cfg), "team/analysis"); !strings.Contains(l, "left alone: a merge is in progress") {
		t.Fatalf("merge in progress: %s", l)
	}
	os.Remove(filepath.Join(gitDir, "MERGE_HEAD"))
	userGit(t, home, clone, "checkout", "--quiet", "--detach")
	if l := lastLine(runSetup(t, cfg), "team/analysis"); !strings.Contains(l, "HEAD is detached") {
		t.Fatalf("detached: %s", l)
	}

	noTokenIn(t, home)
	if strings.Contains(cfg.Stderr.(*bytes.Buffer).String(), token) {
		t.Errorf("the token reached stderr")
	}
}

func TestUnreachableReposNeverStopTheStart(t *testing.T) {
	t.Parallel()
	srv := newGitServer(t)
	srv.newRepo(t, "team/good", map[string]string{"a.txt": "a\n"})
	home := t.TempDir()
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()

	cfg := testConfig(t, home, srv.url, "team/missing", "not-a-repo", "team/good", "other/good")
	cfg.GitTimeout = 2 * time.Second
	start := time.Now()
	log := runSetup(t, cfg)
	if !strings.Contains(lastLine(log, "team/missing"), "not cloned from "+srv.url+"/team/missing.git") {
		t.Errorf("missing repo:\n%s", log)
	}
	if !strings.Contains(lastLine(log, "not-a-repo"), "skipped: \"not-a-repo\" is not owner/name") {
		t.Errorf("bad name:\n%s", log)
	}
	if !strings.Contains(lastLine(log, "team/good"), "cloned") {
		t.Errorf("good repo after a missing one:\n%s", log)
	}
	if !strings.Contains(lastLine(log, "other/good"), "already cloned into ~/repos/good") && !strings.Contains(lastLine(log, "other/good"), "team/good is already cloned") {
		t.Errorf("name clash:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(home, "repos", "missing")); err == nil {
		t.Errorf("a failed clone left a directory")
	}
	if left, _ := filepath.Glob(filepath.Join(home, "repos", clonePrefix+"*")); len(left) > 0 {
		t.Errorf("temporary clones left: %v", left)
	}

	// The whole host unreachable.
	cfg = testConfig(t, t.TempDir(), closed, "team/good")
	cfg.GitTimeout = 2 * time.Second
	if l := lastLine(runSetup(t, cfg), "team/good"); !strings.Contains(l, "not cloned") {
		t.Errorf("closed port: %s", l)
	}

	// A wrong token: refused, no prompt, no hang.
	cfg = testConfig(t, t.TempDir(), srv.url, "team/good")
	for i, e := range cfg.GitExtraEnv {
		if strings.HasPrefix(e, "GITHUB_TOKEN=") {
			cfg.GitExtraEnv[i] = "GITHUB_TOKEN=wrong"
		}
	}
	if l := lastLine(runSetup(t, cfg), "team/good"); !strings.Contains(l, "not cloned") {
		t.Errorf("wrong token: %s", l)
	}

	// A server that never answers: the git timeout ends it, the sync
	// budget skips what is left.
	cfg = testConfig(t, t.TempDir(), srv.url+"/slow", "team/a", "team/b", "team/c")
	cfg.GitTimeout = time.Second
	cfg.SyncTimeout = 1500 * time.Millisecond
	begin := time.Now()
	log = runSetup(t, cfg)
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("a hanging server held the start for %s", d)
	}
	if !strings.Contains(lastLine(log, "team/a"), "timed out after 1s") {
		t.Errorf("hanging server:\n%s", log)
	}
	if !strings.Contains(lastLine(log, "team/c"), "skipped: the sync took longer than 1.5s") {
		t.Errorf("sync budget:\n%s", log)
	}
	if d := time.Since(start); d > 40*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestExistingDirectoriesAreLeftAlone(t *testing.T) {
	t.Parallel()
	srv := newGitServer(t)
	srv.newRepo(t, "team/analysis", map[string]string{"a.txt": "a\n"})
	srv.newRepo(t, "team/empty-dir", map[string]string{"b.txt": "b\n"})
	home := t.TempDir()
	repos := filepath.Join(home, "repos")
	os.MkdirAll(filepath.Join(repos, "analysis"), 0o755)
	writeFile(t, filepath.Join(repos, "analysis", "mine.txt"), "not a repo\n")
	os.MkdirAll(filepath.Join(repos, "empty-dir"), 0o755)
	os.MkdirAll(filepath.Join(repos, clonePrefix+"stale-123"), 0o755)
	log := runSetup(t, testConfig(t, home, srv.url, "team/analysis", "team/empty-dir"))
	if !strings.Contains(lastLine(log, "team/analysis"), "left alone: ~/repos/analysis is not a git repository") &&
		!strings.Contains(lastLine(log, "team/analysis"), "is not a git repository") {
		t.Errorf("plain directory:\n%s", log)
	}
	if readFile(t, filepath.Join(repos, "analysis", "mine.txt")) != "not a repo\n" {
		t.Errorf("plain directory touched")
	}
	if !strings.Contains(lastLine(log, "team/empty-dir"), "cloned") {
		t.Errorf("empty directory:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(repos, clonePrefix+"stale-123")); err == nil {
		t.Errorf("stale temporary clone not removed")
	}

	// A clone whose origin the user changed is not fetched.
	userGit(t, home, filepath.Join(repos, "empty-dir"), "remote", "set-url", "origin", "https://elsewhere.example/x.git")
	log = runSetup(t, testConfig(t, home, srv.url, "team/empty-dir"))
	if !strings.Contains(lastLine(log, "team/empty-dir"), `left alone: its origin is "https://elsewhere.example/x.git"`) {
		t.Errorf("changed origin:\n%s", log)
	}
}

func TestGitConfigKeepsNoTokenAndResetsOtherHelpers(t *testing.T) {
	t.Parallel()
	srv := newGitServer(t)
	up := srv.newRepo(t, "team/analysis", map[string]string{"a.txt": "a\n"})
	home := t.TempDir()
	// The user once configured the "store" helper: it must not be handed
	// the token for the clone host.
	writeFile(t, filepath.Join(home, ".gitconfig"), "[credential]\n\thelper = store\n")
	cfg := testConfig(t, home, srv.url, "team/analysis")
	for range 2 { // running twice does not stack helpers
		runSetup(t, cfg)
	}
	cmd := exec.Command("git", "config", "--global", "--get-all", "credential."+srv.url+".helper")
	cmd.Env = append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	self := helperBin
	// An empty value (which drops the helpers configured before it), then this program.
	if got, want := string(out), "\n!"+shellQuote(self)+" credential\n"; got != want {
		t.Errorf("helpers for the clone host:\n%q\nwant\n%q", got, want)
	}
	if _, err := os.Stat(filepath.Join(home, ".git-credentials")); err == nil {
		t.Errorf("the store helper saved credentials")
	}
	// A helper in the repo's own config is not asked either when the
	// entrypoint fetches.
	clone := filepath.Join(home, "repos", "analysis")
	userGit(t, home, clone, "config", "credential.helper", "store")
	up.commit(t, "second", map[string]string{"b.txt": "b\n"})
	if l := lastLine(runSetup(t, cfg), "team/analysis"); !strings.Contains(l, "fast-forwarded") {
		t.Fatalf("fetch with a repo-local helper: %s", l)
	}
	if _, err := os.Stat(filepath.Join(home, ".git-credentials")); err == nil {
		t.Errorf("the repo's store helper saved credentials")
	}
	noTokenIn(t, home)
}

// Two servers of one user start at once on the same home: one syncs, the
// other waits and finds the repo up to date.
func TestConcurrentStartsTakeTurns(t *testing.T) {
	t.Parallel()
	srv := newGitServer(t)
	srv.newRepo(t, "team/analysis", map[string]string{"a.txt": "a\n"})
	home := t.TempDir()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := testConfig(t, home, srv.url, "team/analysis")
			ctx, cancel := context.WithTimeout(context.Background(), cfg.SyncTimeout)
			defer cancel()
			setup(ctx, cfg)
		}()
	}
	wg.Wait()
	log := readLog(t, home)
	if strings.Count(log, "team/analysis: cloned") != 1 || strings.Count(log, "team/analysis: up to date") != 1 {
		t.Fatalf("two concurrent starts:\n%s", log)
	}
	cmd := exec.Command("git", "config", "--global", "--get-all", "credential."+srv.url+".helper")
	cmd.Env = append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1")
	if out, err := cmd.Output(); err != nil || strings.Count(string(out), "\n") != 2 {
		t.Fatalf("helpers after two concurrent starts: %q %v", out, err)
	}
}

func TestNoReposNoLogAndGitMissing(t *testing.T) {
	home := t.TempDir()
	cfg := testConfig(t, home, defaultGitURL)
	runSetup(t, cfg)
	if _, err := os.Stat(filepath.Join(home, "repos")); err == nil {
		t.Errorf("~/repos created without repos")
	}
	cfg = testConfig(t, t.TempDir(), defaultGitURL, "a/b")
	cfg.Git = "/nonexistent/git"
	log := runSetup(t, cfg)
	if !strings.Contains(cfg.Stderr.(*bytes.Buffer).String()+log, "git is not installed") {
		t.Errorf("missing git not reported: %s", log)
	}
}

// The binary: sets up, then execs its arguments with the same environment.
func TestExecsTheApp(t *testing.T) {
	home := t.TempDir()
	cmd := exec.Command(helperBin, "sh", "-c", `echo "app $0 $HUBGATE_X $$"; git config --global user.name`, "arg0")
	cmd.Env = append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1",
		"HUBGATE_X=kept", "GIT_AUTHOR_NAME=Alice", "HUBGATE_REPOS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "app arg0 kept ") || lines[1] != "Alice" {
		t.Fatalf("output %q", out)
	}
	// exec, not a child: the shell has the entrypoint's pid.
	if pid := strings.Fields(lines[0])[3]; pid != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("app pid %s, entrypoint pid %d", pid, cmd.Process.Pid)
	}
	cmd = exec.Command(helperBin, "/nonexistent/app")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if err := cmd.Run(); !isExit(err, 127) {
		t.Errorf("missing app: %v, want exit 127", err)
	}
}
