package e2e

import (
	"net/http"
	"testing"
)

// TestSteadyStateMakesNoEngineCalls checks the design's promise: with the
// container running, a request costs no Docker API call.
func TestSteadyStateMakesNoEngineCalls(t *testing.T) {
	engine := newFlakyEngine(t)
	g := startGateway(t, gwOptions{env: map[string]string{"DOCKER_HOST": "unix://" + engine.sock}})
	c := g.login("alice")
	g.whoami(c, "alice")
	before := engine.calls.Load()
	if before == 0 {
		t.Fatal("the gateway did not use the counting engine socket; the test would prove nothing")
	}
	for range 100 {
		if resp, _ := g.get(c, "/user/alice/notebook/whoami"); resp.StatusCode != http.StatusOK {
			t.Fatalf("steady request: %d", resp.StatusCode)
		}
	}
	if after := engine.calls.Load(); after != before {
		t.Fatalf("100 steady-state requests made %d engine API calls, want 0", after-before)
	}
}
