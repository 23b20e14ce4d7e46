// Package e2e runs the built hubgate binary (bin/caddy, made by
// `make build`) with the repository's Caddyfile against the real Docker
// engine, and drives it over HTTPS like a browser, an API client and an
// operator would. Nothing here is skipped: without Docker, the binary or
// Chromium the tests fail and say what is missing.
package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	repoRoot  string
	caddyBin  string
	hashCache sync.Map // password -> hash
)

func TestMain(m *testing.M) {
	wd, _ := os.Getwd()
	repoRoot = filepath.Dir(wd)
	caddyBin = os.Getenv("HUBGATE_CADDY")
	if caddyBin == "" {
		caddyBin = filepath.Join(repoRoot, "bin", "caddy")
	}
	if _, err := os.Stat(caddyBin); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: the hubgate binary %s is missing (run `make build`, or `make test` which does it): %v\n", caddyBin, err)
		os.Exit(1)
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: the Docker engine is not reachable; these tests need it: %v\n%s", err, out)
		os.Exit(1)
	}
	if out, err := exec.Command(filepath.Join(repoRoot, "images", "testapp", "build.sh"), "hubgate/testapp:latest").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the test image failed: %v\n%s", err, out)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// hashPassword returns a hash exactly as `caddy hash-password` prints it
// (a low bcrypt cost keeps the tests quick).
func hashPassword(t testing.TB, password string) string {
	if h, ok := hashCache.Load(password); ok {
		return h.(string)
	}
	out, err := exec.Command(caddyBin, "hash-password", "--plaintext", password, "--bcrypt-cost", "6").Output()
	if err != nil {
		t.Fatalf("caddy hash-password: %v", err)
	}
	h := strings.TrimSpace(string(out))
	hashCache.Store(password, h)
	return h
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// gateway is one running hubgate (a bin/caddy process).
type gateway struct {
	t         testing.TB
	dir       string
	name      string
	httpsPort int
	adminAddr string
	env       []string
	cmd       *exec.Cmd
	logPath   string
	logFile   *os.File
	roots     *x509.CertPool
	exited    chan struct{} // closed when the running process has exited
	config    string        // the Caddyfile; default: the repository's
}

type gwOptions struct {
	policy    string            // policy YAML; accounts are appended
	env       map[string]string // extra HUBGATE_* env
	noCleanup bool
}

// The standard test accounts and their passwords.
var accounts = map[string]string{
	"alice":   "alice-password",
	"bob":     "bob-password",
	"mallory": "mallory-password",
	"admin":   "admin-password",
}

const basePolicy = `admins: [admin]
images:
  notebook:
    image: "hubgate/testapp:latest"
    port: 8888
    description: "Test app"
teams:
  research:
    members: [alice, bob, admin]
    images: [notebook]
`

func (g *gateway) writePolicy(body string) {
	g.t.Helper()
	var b strings.Builder
	b.WriteString("accounts:\n")
	for u, p := range accounts {
		fmt.Fprintf(&b, "  %s: %q\n", u, hashPassword(g.t, p))
	}
	dir := filepath.Join(g.dir, "policy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		g.t.Fatal(err)
	}
	writeAtomic(g.t, filepath.Join(dir, "accounts.yaml"), b.String())
	writeAtomic(g.t, filepath.Join(dir, "policy.yaml"), body)
}

// writeAtomic saves like an editor does: write a temporary file, rename.
func writeAtomic(t testing.TB, path, body string) {
	t.Helper()
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func startGateway(t testing.TB, opts gwOptions) *gateway {
	t.Helper()
	g := newGateway(t, opts)
	g.start()
	return g
}

// newGateway prepares a gateway (folders, policy, environment, clean-up)
// without starting it.
func newGateway(t testing.TB, opts gwOptions) *gateway {
	t.Helper()
	g := &gateway{
		t:         t,
		dir:       t.TempDir(),
		name:      fmt.Sprintf("hgt%d", time.Now().UnixNano()%1_000_000_000),
		httpsPort: freePort(t),
		adminAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	if opts.policy == "" {
		opts.policy = basePolicy
	}
	g.writePolicy(opts.policy)
	env := map[string]string{
		"HUBGATE_HTTPS_PORT": fmt.Sprint(g.httpsPort),
		"HUBGATE_HTTP_PORT":  fmt.Sprint(freePort(t)),
		"HUBGATE_ADMIN":      g.adminAddr,
		"HUBGATE_SITE":       "localhost",
		"HUBGATE_POLICY":     filepath.Join(g.dir, "policy"),
		"HUBGATE_NAME":       g.name,
		"XDG_DATA_HOME":      filepath.Join(g.dir, "data"),
		"XDG_CONFIG_HOME":    filepath.Join(g.dir, "config"),
	}
	for k, v := range opts.env {
		env[k] = v
	}
	g.env = os.Environ()
	for k, v := range env {
		g.env = append(g.env, k+"="+v)
	}
	if !opts.noCleanup {
		t.Cleanup(g.removeContainers)
	}
	t.Cleanup(g.stop)
	return g
}

// start runs the binary with the repository's Caddyfile and waits until
// it answers on its health endpoint over HTTPS.
func (g *gateway) start() {
	g.t.Helper()
	g.logPath = filepath.Join(g.dir, "caddy.log")
	f, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		g.t.Fatal(err)
	}
	g.logFile = f
	config := g.config
	if config == "" {
		config = filepath.Join(repoRoot, "Caddyfile")
	}
	g.cmd = exec.Command(caddyBin, "run", "--config", config, "--adapter", "caddyfile")
	g.cmd.Dir = repoRoot
	g.cmd.Env = g.env
	g.cmd.Stdout, g.cmd.Stderr = f, f
	if err := g.cmd.Start(); err != nil {
		g.t.Fatalf("start caddy: %v", err)
	}
	exited := make(chan struct{})
	g.exited = exited
	var waitErr error
	go func(cmd *exec.Cmd) {
		waitErr = cmd.Wait()
		close(exited)
	}(g.cmd)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			g.t.Fatalf("caddy exited during start: %v\n%s", waitErr, g.logTail())
		default:
		}
		if g.roots == nil {
			if pem, err := os.ReadFile(filepath.Join(g.dir, "data", "caddy", "pki", "authorities", "local", "root.crt")); err == nil {
				pool := x509.NewCertPool()
				if pool.AppendCertsFromPEM(pem) {
					g.roots = pool
				}
			}
		}
		if g.roots != nil {
			resp, err := g.client().Get(g.url("/hub/health"))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("caddy did not become ready\n%s", g.logTail())
}

// stop ends the gateway process gracefully; its containers keep running.
func (g *gateway) stop() {
	if g.cmd == nil || g.cmd.Process == nil {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
	g.cmd = nil
	if g.logFile != nil {
		g.logFile.Close()
	}
	if g.t.Failed() {
		g.t.Logf("gateway log (tail):\n%s", g.logTail())
	}
}

func (g *gateway) restart() {
	g.t.Helper()
	g.stop()
	g.start()
}

// logs returns the gateway's whole log so far.
func (g *gateway) logs() string {
	b, _ := os.ReadFile(g.logPath)
	return string(b)
}

// logTail returns the end of the log, for failure reports.
func (g *gateway) logTail() string {
	s := g.logs()
	if len(s) > 20000 {
		s = s[len(s)-20000:]
	}
	return s
}

// waitLog waits until the gateway's log contains s.
func (g *gateway) waitLog(s string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for {
		if strings.Contains(g.logs(), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (g *gateway) removeContainers() {
	if ids := strings.Fields(docker("ps", "-aq", "--filter", "label=hubgate.deployment="+g.name)); len(ids) > 0 {
		docker(append([]string{"rm", "-f", "-v"}, ids...)...)
	}
	if vols := strings.Fields(docker("volume", "ls", "-q", "--filter", "label=hubgate.deployment="+g.name)); len(vols) > 0 {
		docker(append([]string{"volume", "rm", "-f"}, vols...)...)
	}
	if nets := strings.Fields(docker("network", "ls", "-q", "--filter", "label=hubgate.deployment="+g.name)); len(nets) > 0 {
		docker(append([]string{"network", "rm"}, nets...)...)
	}
}

// docker runs the docker CLI and returns its trimmed output ("" on error).
func docker(args ...string) string {
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// containers lists the IDs of this deployment's containers for a user.
func (g *gateway) containers(user string) []string {
	return strings.Fields(docker("ps", "-aq", "--no-trunc", "--filter", "label=hubgate.deployment="+g.name, "--filter", "label=hubgate.user="+user))
}

func (g *gateway) url(path string) string {
	return fmt.Sprintf("https://localhost:%d%s", g.httpsPort, path)
}

func (g *gateway) transport() *http.Transport {
	return &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: g.roots, ServerName: "localhost"},
		MaxIdleConnsPerHost: 64,
	}
}

// client returns an HTTP client with a cookie jar that does not follow
// redirects, so tests see each status.
func (g *gateway) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:       jar,
		Transport: g.transport(),
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login logs user in through the login form and returns the client.
func (g *gateway) login(user string) *http.Client {
	g.t.Helper()
	c := g.client()
	resp := g.postLogin(c, user, accounts[user], "/")
	if resp.StatusCode != http.StatusSeeOther {
		g.t.Fatalf("login %s: status %d, want 303", user, resp.StatusCode)
	}
	return c
}

func (g *gateway) postLogin(c *http.Client, user, password, next string) *http.Response {
	g.t.Helper()
	resp, err := c.Get(g.url("/hub/login?next=" + url.QueryEscape(next)))
	if err != nil {
		g.t.Fatal(err)
	}
	body := readBody(g.t, resp)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		g.t.Fatalf("login page has no csrf field:\n%s", body)
	}
	form := url.Values{"username": {user}, "password": {password}, "csrf": {m[1]}, "next": {next}}
	resp, err = c.PostForm(g.url("/hub/login"), form)
	if err != nil {
		g.t.Fatal(err)
	}
	readBody(g.t, resp)
	return resp
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

// get sends a GET as an API client would (no text/html).
func (g *gateway) get(c *http.Client, path string, hdr ...string) (*http.Response, string) {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.url(path), nil)
	if err != nil {
		g.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		g.t.Fatalf("GET %s: %v", path, err)
	}
	return resp, readBody(g.t, resp)
}

// getReady retries a GET while the server is starting (503 with
// Retry-After) and returns the first other answer.
func (g *gateway) getReady(c *http.Client, path string, hdr ...string) (*http.Response, string) {
	g.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, body := g.get(c, path, hdr...)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || time.Now().After(deadline) {
			return resp, body
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (g *gateway) do(c *http.Client, method, path string, body io.Reader, hdr ...string) (*http.Response, string) {
	g.t.Helper()
	req, err := http.NewRequest(method, g.url(path), body)
	if err != nil {
		g.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, readBody(g.t, resp)
}

func (g *gateway) cookie(c *http.Client, name string) *http.Cookie {
	u, _ := url.Parse(g.url("/"))
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck
		}
	}
	return nil
}

// eventually polls cond until it holds or within passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// execCaddy prepares a caddy CLI command in the gateway's environment.
func execCaddy(g *gateway, args ...string) *exec.Cmd {
	cmd := exec.Command(caddyBin, args...)
	cmd.Dir = repoRoot
	cmd.Env = g.env
	return cmd
}

// navigate sends a GET as a browser following a link or typing the
// address does (so the gateway answers with pages, not JSON).
func (g *gateway) navigate(c *http.Client, path string) (*http.Response, string) {
	g.t.Helper()
	return g.get(c, path, "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
}
