package e2e

import (
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// gitHTTPServer is a private git host like GitHub: `git http-backend`
// behind Basic auth that accepts only the token as the password. It
// listens on the gateway address of a Docker network the test creates, so
// containers on that network reach it and nothing else does.
type gitHTTPServer struct {
	root   string // bare repos: root/owner/name.git
	url    string // http://gateway-ip:port
	token  string
	mu     sync.Mutex
	seen   []string // "user:ok", "user:bad" or "none", per request
	server *http.Server
}

func startGitHTTPServer(t *testing.T, ip, token string) *gitHTTPServer {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git is needed on the host: %v", err)
	}
	s := &gitHTTPServer{root: t.TempDir(), token: token}
	backend := &cgi.Handler{
		Path:   filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"),
		Root:   "/",
		Env:    []string{"GIT_PROJECT_ROOT=" + s.root, "GIT_HTTP_EXPORT_ALL=1"},
		Stderr: io.Discard, // "not a git repository" for the missing repo
	}
	s.server = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		switch {
		case !ok:
			s.record("none")
		case subtle.ConstantTimeCompare([]byte(pass), []byte(s.token)) == 1:
			s.record(user + ":ok")
			backend.ServeHTTP(w, r)
			return
		default:
			s.record(user + ":bad")
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
	})}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on the network's gateway %s: %v", ip, err)
	}
	go s.server.Serve(l)
	t.Cleanup(func() { s.server.Close() })
	s.url = "http://" + l.Addr().String()
	return s
}

func (s *gitHTTPServer) record(v string) {
	s.mu.Lock()
	s.seen = append(s.seen, v)
	s.mu.Unlock()
}

func (s *gitHTTPServer) requests() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.seen, " ")
}

// gitOnHost runs git on the host for the upstream side, isolated from the
// machine's configuration.
func gitOnHost(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Upstream", "GIT_AUTHOR_EMAIL=upstream@example.org",
		"GIT_COMMITTER_NAME=Upstream", "GIT_COMMITTER_EMAIL=upstream@example.org")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// upstreamRepo is a bare repo on the server and a work tree pushing to it.
type upstreamRepo struct{ work string }

func (s *gitHTTPServer) newRepo(t *testing.T, spec string, files map[string]string) *upstreamRepo {
	t.Helper()
	bare := filepath.Join(s.root, spec+".git")
	gitOnHost(t, s.root, "init", "--quiet", "--bare", "--initial-branch=main", bare)
	u := &upstreamRepo{work: t.TempDir()}
	gitOnHost(t, u.work, "init", "--quiet", "--initial-branch=main")
	gitOnHost(t, u.work, "remote", "add", "origin", bare)
	u.commit(t, "first", files)
	return u
}

func (u *upstreamRepo) commit(t *testing.T, msg string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(u.work, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitOnHost(t, u.work, "add", "-A")
	gitOnHost(t, u.work, "commit", "--quiet", "-m", msg)
	gitOnHost(t, u.work, "push", "--quiet", "origin", "main")
}

// The git acceptance test, with the real image and entrypoint:
// the first start clones a private repo with the token, the next start
// brings a new upstream commit while keeping a local uncommitted edit, a
// diverged repo is left alone with the reason in the log, a missing or
// unreachable repo does not stop the app, and no file in the home volume
// contains the token.
func TestGitReposClonedAndFastForwardedInTheImage(t *testing.T) {
	buildTestImage(t, "jupyter-debian", jupyterImage)
	id := fmt.Sprintf("hgtgit%d", time.Now().UnixNano()%1_000_000_000)
	label := "hubgate.test=" + id
	network, volume := id, id+"-home"
	t.Cleanup(func() {
		if ids := strings.Fields(docker("ps", "-aq", "--filter", "label="+label)); len(ids) > 0 {
			docker(append([]string{"rm", "-f"}, ids...)...)
		}
		docker("volume", "rm", "-f", volume)
		docker("network", "rm", network)
	})
	if out, err := exec.Command("docker", "network", "create", "--label", label, network).CombinedOutput(); err != nil {
		t.Fatalf("create network: %v\n%s", err, out)
	}
	if out, err := exec.Command("docker", "volume", "create", "--label", label, volume).CombinedOutput(); err != nil {
		t.Fatalf("create volume: %v\n%s", err, out)
	}
	gw := docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", network)
	if net.ParseIP(gw) == nil {
		t.Fatalf("network %s has no gateway address: %q", network, gw)
	}
	const token = "ghp_e2eTOKEN5f3c9a1b7d2e4f6a8c0b"
	srv := startGitHTTPServer(t, gw, token)
	up := srv.newRepo(t, "team/analysis", map[string]string{"README.md": "version 1\n", "notes.md": "upstream notes\n"})
	other := srv.newRepo(t, "team/other", map[string]string{"a.txt": "a\n"})

	// closed is an address on the network where nothing listens.
	l, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()

	// start runs the image as the gateway would (same env contract), with
	// a command that stands in for the app and reports it was started.
	start := func(gitURL, repos string) string {
		t.Helper()
		args := []string{"run", "--rm", "--label", label, "--network", network,
			"-v", volume + ":/home/jovyan",
			"-e", "GIT_AUTHOR_NAME=Alice Researcher", "-e", "GIT_AUTHOR_EMAIL=alice@example.org",
			"-e", "GIT_COMMITTER_NAME=Alice Researcher", "-e", "GIT_COMMITTER_EMAIL=alice@example.org",
			"-e", "HUBGATE_REPOS=" + repos, "-e", "HUBGATE_GIT_URL=" + gitURL, "-e", "GITHUB_TOKEN=" + token,
			"-e", "HUBGATE_GIT_TIMEOUT=20s",
			jupyterImage, "sh", "-c", "echo app-started-as-$(id -un)"}
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "app-started-as-jovyan") {
			t.Fatalf("the app did not start: %v\n%s", err, out)
		}
		return string(out)
	}
	// inVolume runs a shell command as jovyan on the home volume (no sync).
	inVolume := func(script string) string {
		t.Helper()
		out, err := exec.Command("docker", "run", "--rm", "--label", label, "-v", volume+":/home/jovyan",
			"--entrypoint", "/bin/sh", jupyterImage, "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	logLine := func(spec string) string {
		t.Helper()
		log := inVolume("cat ~/repos/.hubgate-sync.log")
		var last string
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, " "+spec+": ") {
				last = l
			}
		}
		return last
	}

	// First start: cloned with the token; a missing repo is only logged.
	start(srv.url, "team/analysis team/missing")
	if l := logLine("team/analysis"); !strings.Contains(l, "cloned from "+srv.url+"/team/analysis.git into ~/repos/analysis") {
		t.Fatalf("first start: %q\n%s", l, inVolume("cat ~/repos/.hubgate-sync.log"))
	}
	if l := logLine("team/missing"); !strings.Contains(l, "not cloned") {
		t.Errorf("missing repo: %q", l)
	}
	if got := inVolume("cat ~/repos/analysis/README.md"); got != "version 1" {
		t.Fatalf("README after clone: %q", got)
	}
	if got := inVolume("cd ~/repos/analysis && git config user.email && git remote get-url origin"); got != "alice@example.org\n"+srv.url+"/team/analysis.git" {
		t.Errorf("identity and origin: %q", got)
	}
	if !strings.Contains(srv.requests(), "x-access-token:ok") {
		t.Errorf("the server never got the token: %s", srv.requests())
	}

	// A new upstream commit and a local uncommitted edit: the next start
	// fast-forwards and the edit is still there.
	up.commit(t, "second", map[string]string{"README.md": "version 2\n"})
	inVolume("echo 'my local notes' > ~/repos/analysis/notes.md")
	start(srv.url, "team/analysis")
	if l := logLine("team/analysis"); !strings.Contains(l, "fast-forwarded branch main by 1 commit(s)") || !strings.Contains(l, "uncommitted changes are kept") {
		t.Fatalf("second start: %q", l)
	}
	if got := inVolume("cat ~/repos/analysis/README.md ~/repos/analysis/notes.md"); got != "version 2\nmy local notes" {
		t.Fatalf("after the second start: %q", got)
	}

	// A local commit and an upstream commit: diverged, left alone.
	inVolume("cd ~/repos/analysis && git commit --quiet -am 'my notes'")
	local := inVolume("cd ~/repos/analysis && git rev-parse HEAD")
	up.commit(t, "third", map[string]string{"README.md": "version 3\n"})
	start(srv.url, "team/analysis")
	if l := logLine("team/analysis"); !strings.Contains(l, "left alone: branch main has diverged from origin/main (1 local, 1 upstream commit(s))") {
		t.Fatalf("diverged: %q", l)
	}
	if got := inVolume("cd ~/repos/analysis && git rev-parse HEAD && cat README.md"); got != local+"\nversion 2" {
		t.Fatalf("the diverged repo was touched: %q", got)
	}
	if got := inVolume("cd ~/repos/analysis && git log --format=%an -1"); got != "Alice Researcher" {
		t.Errorf("local commit author %q", got)
	}

	// An unreachable host: the app starts, the reason is logged.
	start(closed, "team/other")
	if l := logLine("team/other"); !strings.Contains(l, "not cloned from "+closed) {
		t.Fatalf("unreachable host: %q", l)
	}
	// ...and once reachable, the repo arrives.
	_ = other
	start(srv.url, "team/other")
	if l := logLine("team/other"); !strings.Contains(l, "cloned from") {
		t.Fatalf("other repo: %q", l)
	}

	// No file in the home volume contains the token: grep every file
	// (exit status 1 means no match).
	cmd := exec.Command("docker", "run", "--rm", "--label", label, "-v", volume+":/h", "--entrypoint", "grep",
		jupyterImage, "-r", "-l", "-a", "-F", token, "/h")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("grep for the token in the volume: %v\n%s", err, out)
	}
	files := inVolume("find /home/jovyan -type f | wc -l")
	t.Logf("%s files in the volume, none contains the token; sync log:\n%s", files, inVolume("cat ~/repos/.hubgate-sync.log"))
}
