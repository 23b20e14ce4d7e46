package e2e

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// countingEngine puts a counting proxy in front of the Docker socket and
// returns its DOCKER_HOST and the counter.
func countingEngine(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: "docker"})
	rp.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", "/var/run/docker.sock")
	}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "unix://" + sock, &n
}

// TestSteadyStateMakesNoEngineCalls checks the design's promise: with the
// container running, a request costs no Docker API call.
func TestSteadyStateMakesNoEngineCalls(t *testing.T) {
	host, calls := countingEngine(t)
	g := startGateway(t, gwOptions{env: map[string]string{"DOCKER_HOST": host}})
	c := g.login("alice")
	g.whoami(c, "alice")
	before := calls.Load()
	if before == 0 {
		t.Fatal("the gateway did not use the counting engine socket; the test would prove nothing")
	}
	for range 100 {
		if resp, _ := g.get(c, "/user/alice/notebook/whoami"); resp.StatusCode != http.StatusOK {
			t.Fatalf("steady request: %d", resp.StatusCode)
		}
	}
	if after := calls.Load(); after != before {
		t.Fatalf("100 steady-state requests made %d engine API calls, want 0", after-before)
	}
}
