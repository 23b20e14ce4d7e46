package kubernetes

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hubgate/hubgate/internal/k8stest"
)

// EnvScalePods sets how many pods BenchmarkScale starts (default 1000).
const EnvScalePods = "HUBGATE_K8S_SCALE_PODS"

// BenchmarkScale starts many pods through Ensure on the kwok node and
// reports: the time until all are Running and listed with an address, the
// API calls per pod, the memory a fresh informer holds for them, and the
// cost of a Get with that many routes. It is one run whatever b.N (use
// -benchtime=1x; make bench does):
//
//	go test -run '^$' -bench Scale -benchtime 1x ./spawner/kubernetes/
//
// The figures are printed as "k8s-scale:" lines and as benchmark metrics.
func BenchmarkScale(b *testing.B) {
	t := b
	n, err := strconv.Atoi(os.Getenv(EnvScalePods))
	if err != nil || n < 1 {
		n = 1000
	}
	ns := cp.Namespace(t)
	var counter k8stest.Counter
	s := newSpawner(t, ns, counter.Wrap(cp.Admin), nil)
	if _, err := s.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	base := counter.Total()

	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				_, err := s.Ensure(ctx, spec(fmt.Sprintf("user%04d", i), "lab"))
				cancel()
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ensured := time.Since(start)
	calls := counter.Total() - base

	routes := 0
	deadline := time.Now().Add(15 * time.Minute)
	for time.Now().Before(deadline) {
		l, err := s.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		routes = 0
		for _, inst := range l {
			if inst.Addr != "" {
				routes++
			}
		}
		if routes == n {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	allRunning := time.Since(start)
	if routes != n {
		t.Fatalf("%d of %d pods routable after %s", routes, n, allRunning)
	}

	// A fresh informer (a restarted gateway): its heap cost and calls.
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	var fresh k8stest.Counter
	r := newSpawner(t, ns, fresh.Wrap(cp.Admin), nil)
	restart := time.Now()
	l, err := r.List(context.Background())
	if err != nil || len(l) != n {
		t.Fatalf("restart List: %d %v", len(l), err)
	}
	rebuilt := time.Since(restart)
	runtime.GC()
	runtime.ReadMemStats(&m1)

	// Steady state with n routes: Get from the cache.
	steadyBase := counter.Total()
	const gets = 200_000
	g0 := time.Now()
	for i := range gets {
		if _, err := s.Get(context.Background(), fmt.Sprintf("user%04d", i%n), "lab"); err != nil {
			t.Fatal(err)
		}
	}
	perGet := time.Since(g0) / gets

	lines := []string{
		fmt.Sprintf("pods=%d ensure_all=%s running_and_listed=%s", n, ensured.Round(time.Millisecond), allRunning.Round(time.Millisecond)),
		fmt.Sprintf("api_calls=%d api_calls_per_pod=%.2f", calls, float64(calls)/float64(n)),
		fmt.Sprintf("restart_rebuild=%s restart_api_calls=%d informer_heap_bytes=%d (%.1f KiB/pod)",
			rebuilt.Round(time.Millisecond), fresh.Total(), int64(m1.HeapInuse)-int64(m0.HeapInuse),
			float64(int64(m1.HeapInuse)-int64(m0.HeapInuse))/1024/float64(n)),
		fmt.Sprintf("get_with_%d_routes=%s steady_state_api_calls=%d", n, perGet, counter.Total()-steadyBase),
		fmt.Sprintf("control_plane_rss=%v", cp.RSS()),
	}
	for _, l := range lines {
		fmt.Println("k8s-scale: " + l)
		t.Log(l)
	}
	if counter.Total() != steadyBase {
		t.Errorf("steady state with %d routes made API calls", n)
	}
	b.ReportMetric(allRunning.Seconds(), "s-to-all-running")
	b.ReportMetric(float64(calls)/float64(n), "api-calls/pod")
	b.ReportMetric(float64(int64(m1.HeapInuse)-int64(m0.HeapInuse))/float64(n), "informer-B/pod")
	b.ReportMetric(float64(perGet.Nanoseconds()), "ns/get")
}
