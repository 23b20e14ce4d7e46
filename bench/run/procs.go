package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cleaner runs the registered undo steps once, last first, whatever made
// the benchmark stop: success, an error, a panic or a signal.
type cleaner struct {
	mu   sync.Mutex
	fns  []cleanStep
	done bool
}

type cleanStep struct {
	what string
	fn   func()
}

func (c *cleaner) add(what string, fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, cleanStep{what, fn})
}

func (c *cleaner) run() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	for i := len(c.fns) - 1; i >= 0; i-- {
		s := c.fns[i]
		func() {
			defer func() {
				if r := recover(); r != nil {
					log.Printf("cleanup %s: panic: %v", s.what, r)
				}
			}()
			log.Printf("cleanup: %s", s.what)
			s.fn()
		}()
	}
}

// caddyProc is one server process of the benchmark: hubgate, plain Caddy,
// configurable-http-proxy or oauth2-proxy.
type caddyProc struct {
	label     string
	bin       string
	args      []string
	dir       string
	env       []string
	httpsPort int
	// httpPort is the plain-http listener (0: none).
	httpPort int
	admin    string // the admin endpoint's host:port (pprof lives there)
	logPath  string
	// cpus pins the process (taskset -c) when set: the server side of the
	// benchmark runs on one CPU, the load generator on the other.
	cpus string
	// goMaxProcs sets GOMAXPROCS for a Go server (0: leave it).
	goMaxProcs int

	cmd    *exec.Cmd
	exited chan struct{}
	// started is when the process was started (for the restart figure).
	started time.Time
}

// start runs the process with its output in logPath; it does not wait.
func (p *caddyProc) start() error {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	name, args := p.bin, p.args
	if p.cpus != "" {
		// taskset execs the server: the pid stays the server's.
		name, args = "taskset", append([]string{"-c", p.cpus, p.bin}, p.args...)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	if p.goMaxProcs > 0 {
		cmd.Env = append(slices.Clone(cmd.Env), "GOMAXPROCS="+strconv.Itoa(p.goMaxProcs))
	}
	cmd.Stdout, cmd.Stderr = f, f
	// If this driver dies without cleaning up, the kernel ends the child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.label, err)
	}
	p.cmd = cmd
	p.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return nil
}

// pid returns the process id, or 0.
func (p *caddyProc) pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// waitReady polls path over HTTPS until it answers 200, the process exits
// or within passes.
func (p *caddyProc) waitReady(ctx context.Context, path string, within time.Duration) error {
	return p.waitURL(ctx, p.url(path), within)
}

// waitURL polls u until it answers 200, the process exits or within
// passes.
func (p *caddyProc) waitURL(ctx context.Context, u string, within time.Duration) error {
	return p.waitURLWith(ctx, u, nil, within)
}

// waitURLWith is waitURL sending the request headers hdr.
func (p *caddyProc) waitURLWith(ctx context.Context, u string, hdr http.Header, within time.Duration) error {
	c := insecureClient(nil)
	deadline := time.Now().Add(within)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during start; see %s:\n%s", p.label, p.logPath, tail(p.logPath, 3000))
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		for k, vs := range hdr {
			req.Header[k] = vs
		}
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready at %s within %s (last error %v); see %s", p.label, u, within, err, p.logPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the process: SIGTERM, then SIGKILL after 10 seconds.
func (p *caddyProc) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *caddyProc) url(path string) string {
	return fmt.Sprintf("https://localhost:%d%s", p.httpsPort, path)
}

// httpURL is path on the plain-http listener.
func (p *caddyProc) httpURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.httpPort, path)
}

// insecureClient is an HTTPS client for loopback that accepts Caddy's
// internal CA without installing it, follows no redirects and keeps a
// cookie jar if given.
func insecureClient(jar http.CookieJar) *http.Client {
	return &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback benchmark
			MaxIdleConnsPerHost: 64,
			Proxy:               nil,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// freePorts returns n distinct free loopback ports (HTTPS, HTTP, admin).
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tail returns the last n bytes of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// ownerDir holds one file per benchmark run in progress, named after its
// deployment and holding the driver's pid: a later run sweeps what a
// killed run left behind (its deployment's containers, volumes, network),
// and never touches a run whose driver is still alive.
func ownerDir(out string) string { return filepath.Join(out, "owners") }

func claimOwner(out, name string) error {
	if err := os.MkdirAll(ownerDir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(ownerDir(out), name), []byte(strconv.Itoa(os.Getpid())), 0o644)
}

func releaseOwner(out, name string) { _ = os.Remove(filepath.Join(ownerDir(out), name)) }

// staleOwners returns the deployments of earlier runs whose driver is gone.
func staleOwners(out string) []string {
	entries, _ := os.ReadDir(ownerDir(out))
	var stale []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(ownerDir(out), e.Name()))
		if err != nil {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid > 0 && pid != os.Getpid() && alive(pid) {
			continue
		}
		stale = append(stale, e.Name())
	}
	return stale
}

func alive(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(cmdline), "bench")
}

// unpin lets every thread of process pid run on every CPU (taskset -a)
// and returns what pins them back to the server CPU. Failures are
// logged: the run goes on pinned.
func unpin(pid int) (repin func()) {
	set := func(cpus string) {
		out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput()
		if err != nil {
			log.Printf("taskset -a -p -c %s %d: %v: %s", cpus, pid, err, strings.TrimSpace(string(out)))
		}
	}
	set(fmt.Sprintf("0-%d", runtime.NumCPU()-1))
	return func() { set(serverCPU) }
}
