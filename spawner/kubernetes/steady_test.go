package kubernetes

import (
	"context"
	"fmt"
	"testing"

	"github.com/hubgate/hubgate/internal/k8stest"
)

// TestSteadyStateMakesNoAPICalls: once pods run, Get, List and a watching
// WatchExits are served from the informer's cache: thousands of them make
// no API call. A restarted gateway (a new Spawner) rebuilds every route
// from one list (and one watch).
func TestSteadyStateMakesNoAPICalls(t *testing.T) {
	ns := cp.Namespace(t)
	var counter k8stest.Counter
	s := newSpawner(t, ns, counter.Wrap(cp.Admin), nil)
	users := []string{"hana", "ivan", "jo"}
	for _, u := range users {
		if _, err := s.Ensure(testCtx(t), spec(u, "lab")); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range users {
		waitInstance(t, s, u, "lab", "routable", routable)
	}
	watchExits(t, s)

	before, calls := counter.Total(), counter.Calls()
	ctx := context.Background()
	for i := range 3000 {
		u := users[i%len(users)]
		inst, err := s.Get(ctx, u, "lab")
		if err != nil || inst.Addr == "" {
			t.Fatalf("Get %s: %+v %v", u, inst, err)
		}
		if i%100 == 0 {
			if l, err := s.List(ctx); err != nil || len(l) != len(users) {
				t.Fatalf("List: %d %v", len(l), err)
			}
		}
	}
	if _, err := s.Get(ctx, "nobody", "lab"); err == nil {
		t.Fatal("Get of a missing server succeeded")
	}
	if after := counter.Total(); after != before {
		t.Errorf("steady state made %d API calls (before %v, after %v)", after-before, calls, counter.Calls())
	}

	// A restarted gateway: one list and one watch, whatever the number of
	// servers; no per-server call.
	var fresh k8stest.Counter
	r := newSpawner(t, ns, fresh.Wrap(cp.Admin), nil)
	list, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	routes := 0
	for _, inst := range list {
		if inst.Addr != "" {
			routes++
		}
	}
	if routes != len(users) {
		t.Errorf("restarted gateway sees %d routes, want %d: %+v", routes, len(users), list)
	}
	// client-go streams the initial list over the watch (WatchList), or
	// falls back to a list and a watch.
	path := fmt.Sprintf("GET /api/v1/namespaces/%s/pods", ns)
	got := fresh.Calls()
	if got[path]+got[path+"?watch"] != fresh.Total() || fresh.Total() < 1 || fresh.Total() > 2 {
		t.Errorf("restart made calls %v, want one list-and-watch of %s", got, path)
	}
	t.Logf("restart: %v", got)
	for _, u := range users {
		if _, err := r.Get(ctx, u, "lab"); err != nil {
			t.Error(err)
		}
	}
	if fresh.Total() > 2 {
		t.Errorf("Get after restart made calls: %v", fresh.Calls())
	}
}
