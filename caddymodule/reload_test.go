package caddymodule

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/login"
)

// TestReloadKeepsRuntime: a config reload that changes only tunables
// (route_cache_size, max_concurrent_starts, cull_interval) keeps the same
// runtime, engine client and login state, and applies the new tunables.
// The engine address is one nobody listens on: nothing here needs Docker.
func TestReloadKeepsRuntime(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("admins: [admin]\nimages:\n  app: {image: x, port: 1}\nteams:\n  t: {members: [admin], images: [app]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	config := func(cache, starts int, cull string) []byte {
		return fmt.Appendf(nil, `{
  "admin": {"disabled": true, "config": {"persist": false}},
  "logging": {"logs": {"default": {"level": "ERROR"}}},
  "storage": {"module": "file_system", "root": %q},
  "apps": {"http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "automatic_https": {"disable": true},
    "routes": [{"handle": [{"handler": "hubgate", "policy": [%q], "name": "reloadtest",
      "docker": {"host": %q},
      "route_cache_size": %d, "max_concurrent_starts": %d, "cull_interval": %q}]}]}}}}
}`, filepath.Join(dir, "storage"), pol, "unix://"+filepath.Join(dir, "no-engine.sock"), cache, starts, cull)
	}
	snapshot := func() (*hub.Runtime, *login.State, int) {
		var rt *hub.Runtime
		var st *login.State
		n := 0
		runtimes.Range(func(_, v any) bool { rt = v.(*hub.Runtime); n++; return true })
		loginStates.Range(func(_, v any) bool { st = v.(*login.State); n++; return true })
		return rt, st, n
	}
	if err := caddy.Load(config(100, 2, "1m"), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	rt1, st1, n1 := snapshot()
	if rt1 == nil || st1 == nil || n1 != 2 {
		t.Fatalf("after the first load: runtime %p, state %p, %d pool entries", rt1, st1, n1)
	}
	if err := caddy.Load(config(500, 7, "5s"), true); err != nil {
		t.Fatal(err)
	}
	rt2, st2, n2 := snapshot()
	if rt2 != rt1 || st2 != st1 || n2 != 2 {
		t.Fatalf("a tunables-only reload replaced the runtime (%p -> %p) or the login state (%p -> %p); %d pool entries", rt1, rt2, st1, st2, n2)
	}
	if rt2.Spawner() != rt1.Spawner() {
		t.Fatal("a second engine client was made")
	}
	if c := rt2.Configured(); c.RouteCacheSize != 500 || c.MaxConcurrentStarts != 7 || c.CullInterval != 5*time.Second {
		t.Fatalf("tunables not applied: %+v", c)
	}
}
