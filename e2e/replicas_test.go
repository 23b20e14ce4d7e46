package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Several replicas behind a load balancer: three hubgate processes
// (bin/caddy) on plain HTTP sharing one file_system storage folder and one
// policy, behind a fourth Caddy that terminates TLS and balances them
// round robin with active health checks on /hub/health (the shape of a
// TLS-terminating load balancer or ingress in front of N replicas).

const (
	replicaLease = 3 * time.Second
	// leaseBound is cull_lease + cull_lease/3 (the holder dies just after
	// renewing) plus the file_system storage's stale-lock time (2s), should
	// it die while holding the lease key's lock, plus a second of slack
	// for this busy machine.
	leaseBound = replicaLease + replicaLease/3 + 2*time.Second + time.Second
)

// replica is one hubgate process behind the balancer.
type replica struct {
	t       testing.TB
	idx     int
	dir     string
	port    int
	config  string
	env     []string
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
	logFile *os.File
}

// cluster is the balancer (a gateway whose config is a reverse_proxy, so
// every harness helper talks to it) and the replicas behind it.
type cluster struct {
	lb       *gateway
	replicas []*replica
	storage  string
}

func replicaCaddyfile(storage, policy, name string, lbPort, port, admin int) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	storage file_system {
		root %s
	}
	skip_install_trust
	auto_https off
	# Health says not ready during the delay, so the balancer stops
	# sending here before the listener closes; then requests in flight
	# have the grace period to finish.
	shutdown_delay 1500ms
	grace_period 10s
	servers {
		trusted_proxies static 127.0.0.1/32
	}
}

# Any Host: the balancer passes the browser's on.
http://:%d {
	bind 127.0.0.1
	hubgate {
		policy %s
		name %s
		public_url https://localhost:%d
		cull_interval 1s
		activity_flush 1s
		cull_lease %s
		start_wait 2s
		login_failures_per_user 5
	}
}
`, admin, storage, port, policy, name, lbPort, replicaLease)
}

func lbCaddyfile(upstreams []string) string {
	return fmt.Sprintf(`{
	skip_install_trust
	http_port {$HUBGATE_HTTP_PORT}
	https_port {$HUBGATE_HTTPS_PORT}
	admin {$HUBGATE_ADMIN}
}

localhost {
	tls internal
	reverse_proxy %s {
		lb_policy round_robin
		lb_try_duration 5s
		lb_try_interval 100ms
		health_uri /hub/health
		health_interval 250ms
		health_timeout 2s
		health_passes 1
		health_fails 1
	}
}
`, strings.Join(upstreams, " "))
}

func startCluster(t testing.TB, policy string, n int) *cluster {
	t.Helper()
	lb := newGateway(t, gwOptions{policy: policy})
	cl := &cluster{lb: lb, storage: filepath.Join(lb.dir, "shared-storage")}
	var ups []string
	for i := range n {
		r := &replica{t: t, idx: i, dir: filepath.Join(lb.dir, fmt.Sprintf("replica%d", i)), port: freePort(t)}
		if err := os.MkdirAll(r.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		r.config = filepath.Join(r.dir, "Caddyfile")
		body := replicaCaddyfile(cl.storage, filepath.Join(lb.dir, "policy"), lb.name, lb.httpsPort, r.port, freePort(t))
		if err := os.WriteFile(r.config, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		r.env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(r.dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(r.dir, "config"))
		t.Cleanup(r.stop)
		cl.replicas = append(cl.replicas, r)
		ups = append(ups, fmt.Sprintf("127.0.0.1:%d", r.port))
	}
	// The first replica creates the keys; the others find them.
	for _, r := range cl.replicas {
		r.start()
	}
	lbConf := filepath.Join(lb.dir, "lb.Caddyfile")
	if err := os.WriteFile(lbConf, []byte(lbCaddyfile(ups)), 0o644); err != nil {
		t.Fatal(err)
	}
	lb.runWith(lbConf)
	return cl
}

func (r *replica) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", r.port, path) }

func (r *replica) start() {
	r.t.Helper()
	r.logPath = filepath.Join(r.dir, "caddy.log")
	f, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	r.logFile = f
	r.cmd = exec.Command(caddyBin, "run", "--config", r.config, "--adapter", "caddyfile")
	r.cmd.Dir = repoRoot
	r.cmd.Env = r.env
	r.cmd.Stdout, r.cmd.Stderr = f, f
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start replica %d: %v", r.idx, err)
	}
	exited := make(chan struct{})
	r.exited = exited
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(exited) }(r.cmd)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			r.t.Fatalf("replica %d exited during start\n%s", r.idx, tail(r.logs()))
		default:
		}
		if h, ok := r.health(); ok && h.Status == "ok" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("replica %d did not become ready\n%s", r.idx, tail(r.logs()))
}

// stop is a graceful stop (SIGTERM), as a rolling restart does it.
func (r *replica) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(20 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
	r.logFile.Close()
	if r.t.Failed() {
		r.t.Logf("replica %d log (tail):\n%s", r.idx, tail(r.logs()))
	}
}

// kill is kill -9.
func (r *replica) kill() {
	_ = r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
	r.logFile.Close()
}

func (r *replica) logs() string {
	b, _ := os.ReadFile(r.logPath)
	return string(b)
}

func tail(s string) string {
	if len(s) > 15000 {
		return s[len(s)-15000:]
	}
	return s
}

type replicaHealth struct {
	Status  string `json:"status"`
	Replica struct {
		Replica   string `json:"replica"`
		CullLease bool   `json:"cull_lease"`
		StorageOK bool   `json:"storage_ok"`
	} `json:"replica"`
}

func (r *replica) health() (replicaHealth, bool) {
	var h replicaHealth
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(r.url("/hub/health"))
	if err != nil {
		return h, false
	}
	defer resp.Body.Close()
	if json.NewDecoder(resp.Body).Decode(&h) != nil {
		return h, false
	}
	return h, true
}

// direct sends a GET straight to the replica with a session cookie copied
// from the browser (as the balancer would forward it).
func (r *replica) direct(session, path string, hdr ...string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, r.url(path), nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Cookie", "__Host-hubgate-session="+session)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// holder is the index of the replica holding the cull lease, or -1.
func (cl *cluster) holder() int {
	found := -1
	for i, r := range cl.replicas {
		if r.cmd == nil {
			continue
		}
		if h, ok := r.health(); ok && h.Replica.CullLease {
			if found >= 0 {
				cl.lb.t.Fatalf("replicas %d and %d both hold the cull lease", found, i)
			}
			found = i
		}
	}
	return found
}

// waitHolder waits for exactly one live replica to hold the lease.
func (cl *cluster) waitHolder(within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		if h := cl.holder(); h >= 0 {
			return h
		}
		if time.Now().After(deadline) {
			cl.lb.t.Fatalf("no replica took the cull lease within %s", within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReplicasBehindLoadBalancer(t *testing.T) {
	policy := strings.Replace(basePolicy, "    images: [notebook]\n", "    images: [notebook]\n    idle_timeout: 8s\n", 1)
	cl := startCluster(t, policy, 3)
	lb := cl.lb
	home := func(r *replica, session string) int {
		code, _, err := r.direct(session, "/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
		if err != nil {
			t.Fatalf("replica %d: %v", r.idx, err)
		}
		return code
	}

	// A login through the balancer is valid on every replica.
	if resp, body := lb.get(lb.client(), "/hub/login", "Accept", "text/html"); resp.StatusCode != http.StatusOK {
		t.Fatalf("login page through the balancer: %d %v\n%.500s", resp.StatusCode, resp.Header, body)
	}
	alice := lb.login("alice")
	aliceSession := lb.cookie(alice, "__Host-hubgate-session").Value
	for _, r := range cl.replicas {
		if code := home(r, aliceSession); code != http.StatusOK {
			t.Fatalf("alice's session on replica %d: %d, want 200", r.idx, code)
		}
	}

	// 30 racing first requests spread over the replicas give one
	// container.
	var wg sync.WaitGroup
	errs := make(chan string, 30)
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := cl.replicas[i%len(cl.replicas)]
			deadline := time.Now().Add(60 * time.Second)
			for {
				code, body, err := r.direct(aliceSession, "/user/alice/notebook/whoami")
				if err == nil && code == http.StatusOK && strings.Contains(body, `"user": "alice"`) {
					return
				}
				if time.Now().After(deadline) || (err == nil && code != http.StatusServiceUnavailable) {
					errs <- fmt.Sprintf("request %d via replica %d: %d %v %.300s", i, r.idx, code, err, body)
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	ids := lb.containers("alice")
	if len(ids) != 1 {
		t.Fatalf("30 racing first requests on 3 replicas made %d containers, want 1", len(ids))
	}
	aliceID := ids[0]

	// A user removed from the policy is refused on every replica.
	bob := lb.login("bob")
	bobSession := lb.cookie(bob, "__Host-hubgate-session").Value
	for _, r := range cl.replicas {
		if code := home(r, bobSession); code != http.StatusOK {
			t.Fatalf("bob on replica %d before removal: %d", r.idx, code)
		}
	}
	lb.writePolicy(strings.Replace(policy, "members: [alice, bob, admin]", "members: [alice, admin]", 1))
	for _, r := range cl.replicas {
		eventually(t, 10*time.Second, fmt.Sprintf("replica %d refuses bob", r.idx), func() bool { return home(r, bobSession) == http.StatusForbidden })
	}

	// A logout on one replica is honoured by all within 2 s.
	carol := lb.login("admin")
	carolSession := lb.cookie(carol, "__Host-hubgate-session").Value
	resp := lb.logout(carol)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	loggedOut := time.Now()
	var propagation time.Duration
	for _, r := range cl.replicas {
		eventually(t, 5*time.Second, fmt.Sprintf("replica %d refuses the logged-out session", r.idx), func() bool {
			return home(r, carolSession) != http.StatusOK
		})
		propagation = max(propagation, time.Since(loggedOut))
	}
	t.Logf("FIGURE logout propagation to all replicas: %s", propagation.Round(time.Millisecond))
	if propagation > 2*time.Second {
		t.Errorf("logout took %s to reach every replica, want at most 2s", propagation)
	}

	// The login-failure limit (5 per user) is not multiplied by three:
	// the balancer sends each attempt to the next replica.
	fails := 0
	for i := range 8 {
		resp := lb.postLogin(lb.client(), "mallory", "wrong", "/")
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			fails++
		case http.StatusTooManyRequests:
			if i < 5 {
				t.Errorf("attempt %d refused as rate limited before the limit", i+1)
			}
		default:
			t.Fatalf("failed login %d: %d", i+1, resp.StatusCode)
		}
	}
	if fails != 5 {
		t.Errorf("%d wrong passwords were checked across 3 replicas, want the limit, 5", fails)
	}
	if resp := lb.postLogin(lb.client(), "mallory", accounts["mallory"], "/"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the right password during the block: %d, want 429", resp.StatusCode)
	}

	// Activity through replica B keeps the server alive while replica A
	// holds the cull lease (idle_timeout 8s; no traffic goes through A).
	a := cl.waitHolder(leaseBound)
	b := cl.replicas[(a+1)%3]
	for end := time.Now().Add(13 * time.Second); time.Now().Before(end); {
		if code, _, err := b.direct(aliceSession, "/user/alice/notebook/whoami"); err != nil || code != http.StatusOK {
			t.Fatalf("alice via replica %d: %d %v", b.idx, code, err)
		}
		time.Sleep(time.Second)
	}
	if ids := lb.containers("alice"); len(ids) != 1 || ids[0] != aliceID {
		t.Fatalf("alice's server was culled while busy through replica %d (lease holder %d): %v", b.idx, a, ids)
	}

	// A rolling restart under load: no failed request, no one logged
	// out, no server stopped.
	var total, failed atomic.Int64
	var failMu sync.Mutex
	var failures []string
	stopLoad := make(chan struct{})
	var loadWG sync.WaitGroup
	for w := range 4 {
		loadWG.Add(1)
		go func() {
			defer loadWG.Done()
			c := lb.client()
			u, _ := url.Parse(lb.url("/"))
			c.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-hubgate-session", Value: aliceSession, Path: "/", Secure: true}})
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				resp, err := c.Get(lb.url(fmt.Sprintf("/user/alice/notebook/whoami?w=%d", w)))
				total.Add(1)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					failMu.Lock()
					if err != nil {
						failures = append(failures, err.Error())
					} else {
						failures = append(failures, resp.Status)
					}
					failMu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	began := time.Now()
	for _, r := range cl.replicas {
		r.stop()
		r.start()
		// The balancer's health check sees it again.
		time.Sleep(500 * time.Millisecond)
	}
	close(stopLoad)
	loadWG.Wait()
	t.Logf("FIGURE rolling restart of 3 replicas in %s: %d requests, %d failed %v", time.Since(began).Round(time.Millisecond), total.Load(), failed.Load(), failures)
	if failed.Load() != 0 || total.Load() < 100 {
		t.Errorf("rolling restart: %d of %d requests failed: %v", failed.Load(), total.Load(), failures)
	}
	if ids := lb.containers("alice"); len(ids) != 1 || ids[0] != aliceID {
		t.Fatalf("a rolling restart changed alice's server: %v", ids)
	}

	// kill -9 of the lease holder: another replica culls within the bound.
	a = cl.waitHolder(leaseBound)
	killed := time.Now()
	cl.replicas[a].kill()
	next := cl.waitHolder(leaseBound)
	takeover := time.Since(killed)
	t.Logf("FIGURE cull lease takeover after kill -9 of replica %d: %s (replica %d), bound %s", a, takeover.Round(time.Millisecond), next, leaseBound)
	cl.replicas[a].start()

	// The storage down: running servers keep being served, new logins
	// and starts get a clear 503, and everything recovers by itself.
	admin := lb.login("admin")
	down := cl.storage + ".down"
	if err := os.Rename(cl.storage, down); err != nil {
		t.Fatal(err)
	}
	// A file where the folder was: as unreadable and unwritable as a
	// lost mount, even for root.
	if err := os.WriteFile(cl.storage, []byte("storage is down"), 0o644); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			_ = os.Remove(cl.storage)
			_ = os.Rename(down, cl.storage)
		}
	}
	t.Cleanup(restore)
	for _, r := range cl.replicas {
		eventually(t, 5*time.Second, fmt.Sprintf("replica %d notices the storage is down", r.idx), func() bool {
			h, ok := r.health()
			return ok && !h.Replica.StorageOK
		})
	}
	for range 6 {
		if resp, body := lb.get(alice, "/user/alice/notebook/whoami"); resp.StatusCode != http.StatusOK {
			t.Fatalf("running server with the storage down: %d %.300s", resp.StatusCode, body)
		}
	}
	for range 3 {
		resp, body := lb.navigate(admin, "/user/admin/notebook/")
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "shared storage") {
			t.Fatalf("a new start with the storage down: %d, want 503 saying why\n%.800s", resp.StatusCode, body)
		}
	}
	c := lb.client()
	if resp := lb.postLogin(c, "alice", accounts["alice"], "/"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a new login with the storage down: %d, want 503", resp.StatusCode)
	}
	restore()
	eventually(t, 10*time.Second, "a login works again after the storage is back", func() bool {
		return lb.postLogin(lb.client(), "alice", accounts["alice"], "/").StatusCode == http.StatusSeeOther
	})
	eventually(t, 10*time.Second, "a start works again after the storage is back", func() bool {
		resp, _ := lb.get(admin, "/user/admin/notebook/whoami")
		return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "2"
	})
	lb.getReady(admin, "/user/admin/notebook/whoami")

	// With no more traffic, the lease holder culls alice's server once it
	// is idle (8s): culling works after all of the above.
	h := cl.waitHolder(leaseBound)
	eventually(t, 25*time.Second, "alice's idle server is culled", func() bool { return len(lb.containers("alice")) == 0 })
	if !strings.Contains(cl.replicas[h].logs(), `"msg":"cull"`) {
		t.Logf("the cull was logged by another replica than %d (the lease moved)", h)
	}
}

// BenchmarkReplicas is req/s of a running server's requests through the
// balancer with one replica behind it and with three (go test ./e2e -run
// '^$' -bench Replicas -benchtime 5s). The figure depends on the cores:
// on a 2-core machine three replicas compete with the balancer and the
// app for the same CPUs.
func BenchmarkReplicas(b *testing.B) {
	for _, n := range []int{1, 3} {
		cl := startCluster(b, basePolicy, n)
		c := cl.lb.login("alice")
		if resp, _ := cl.lb.getReady(c, "/user/alice/notebook/whoami"); resp.StatusCode != http.StatusOK {
			b.Fatalf("whoami: %d", resp.StatusCode)
		}
		session := cl.lb.cookie(c, "__Host-hubgate-session").Value
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				cc := cl.lb.withCookie(session)
				for pb.Next() {
					resp, err := cc.Get(cl.lb.url("/user/alice/notebook/whoami"))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
		for _, r := range cl.replicas {
			r.stop()
		}
		cl.lb.stop()
		cl.lb.removeContainers()
	}
}
