package redisstorage

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"
)

// redisServer is a real redis-server the test started on a free loopback
// port, with its own directory.
type redisServer struct {
	t    *testing.T
	bin  string
	addr string
	dir  string
	args []string
	cmd  *exec.Cmd
}

// startRedis starts redis-server (failing the test if it is not
// installed) with extra config directives, and stops it at the end of the
// test.
func startRedis(t *testing.T, extra ...string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found (%v): these tests need a real Redis; install it with `apt-get install redis-server`", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &redisServer{t: t, bin: bin, addr: fmt.Sprintf("127.0.0.1:%d", port), dir: t.TempDir()}
	portArgs := []string{"--port", fmt.Sprint(port)}
	if len(extra) > 0 && extra[0] == "--tls" {
		// TLS only: the plain port off, the TLS port on the free port.
		portArgs, extra = []string{"--port", "0", "--tls-port", fmt.Sprint(port)}, extra[1:]
	}
	s.args = append(append([]string{"--bind", "127.0.0.1"}, portArgs...),
		"--dir", s.dir, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--protected-mode", "yes")
	s.args = append(s.args, extra...)
	s.start()
	t.Cleanup(s.stop)
	return s
}

// start starts the server (again, on the same port) and waits until it
// accepts connections.
func (s *redisServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, s.args...)
	log, err := os.Create(fmt.Sprintf("%s/redis-%d.log", s.dir, time.Now().UnixNano()))
	if err != nil {
		s.t.Fatal(err)
	}
	defer log.Close()
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(log.Name())
			s.t.Fatalf("redis-server did not listen on %s within 10s: %v\n%s", s.addr, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server and waits for it to exit.
func (s *redisServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// client returns a raw client on the server, for looking behind the
// storage's back.
func (s *redisServer) client(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: 1, DialerRetries: 1})
	t.Cleanup(func() { c.Close() })
	return c
}

// newStorage returns a Storage on the server, as one replica would have.
func newStorage(t *testing.T, s *redisServer, prefix string, lockTTL time.Duration) *Storage {
	t.Helper()
	st := New(redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: 1, DialerRetries: 1, DialTimeout: time.Second}), Options{
		Address:      s.addr,
		KeyPrefix:    prefix,
		LockTTL:      lockTTL,
		Timeout:      2 * time.Second,
		Logger:       zaptest.NewLogger(t),
		pollInterval: 10 * time.Millisecond,
	})
	t.Cleanup(func() { st.Close() })
	return st
}

// holderEnv makes the test binary a lock holder (see TestMain): it takes
// the lock named in the value "addr|prefix|name|ttl", prints "locked" and
// waits to be killed.
const holderEnv = "HUBGATE_REDISSTORAGE_HOLDER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(holderEnv); spec != "" {
		os.Exit(holdLock(spec))
	}
	os.Exit(m.Run())
}

// holdLock is the lock-holder process.
func holdLock(spec string) int {
	f := strings.Split(spec, "|")
	ttl, _ := time.ParseDuration(f[3])
	st := New(redis.NewClient(&redis.Options{Addr: f[0]}), Options{Address: f[0], KeyPrefix: f[1], LockTTL: ttl})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.Lock(ctx, f[2]); err != nil {
		fmt.Println("lock failed:", err)
		return 1
	}
	fmt.Println("locked")
	time.Sleep(time.Minute)
	return 0
}

// startHolder runs a lock-holder process and returns once it holds the
// lock.
func startHolder(t *testing.T, s *redisServer, prefix, name string, ttl time.Duration) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%s|%s", holderEnv, s.addr, prefix, name, ttl))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start lock holder: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("lock holder: %q, %v", line, err)
	}
	return cmd
}
