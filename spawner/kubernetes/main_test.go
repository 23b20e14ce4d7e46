package kubernetes

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/hubgate/hubgate/internal/k8stest"
	"github.com/hubgate/hubgate/spawner"
)

// cp is the package's control plane: etcd, kube-apiserver, kube-scheduler
// and kwok with one fake node of 8 CPUs, 8 GiB and 2 GPUs.
var cp *k8stest.ControlPlane

// admin is a clientset the tests use to look behind the Spawner's back.
var admin *kubernetes.Clientset

const (
	nodeMemory = "8Gi"
	testImage  = "hubgate/testapp:latest"
)

// TestMain starts the control plane, failing loudly (never skipping) when
// its binaries are missing.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	start := time.Now()
	var err error
	cp, err = k8stest.Start(k8stest.Options{
		Nodes:        true,
		NodeCPU:      "8",
		NodeMemory:   nodeMemory,
		NodeLabels:   map[string]string{"hubgate.test/gpu": "yes"},
		NodeExtended: map[string]string{"nvidia.com/gpu": "2"},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: spawner/kubernetes tests need a real control plane: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "control plane up in %s at %s\n", time.Since(start).Round(time.Millisecond), cp.URL)
	admin = cp.Client()
	code := m.Run()
	if err := cp.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: stop control plane: %v\n", err)
		code = 1
	}
	return code
}

// newSpawner returns a Spawner on namespace ns with restCfg (the admin's
// when nil), closed at the end of the test.
func newSpawner(t testing.TB, ns string, restCfg *rest.Config, mut func(*Config)) *Spawner {
	t.Helper()
	if restCfg == nil {
		restCfg = cp.Admin
	}
	cfg := Config{Namespace: ns, REST: restCfg, Deployment: "hgtest", StopGrace: time.Second}
	if mut != nil {
		mut(&cfg)
	}
	s, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// spec returns a minimal spec for user and server.
func spec(user, server string) spawner.Spec {
	return spawner.Spec{
		User: user, Server: server, Image: testImage, Port: 8888,
		HomeMount: "/home/hubgate", Nonce: "nonce-" + user + "-" + server,
		Env: map[string]string{"HUBGATE_TOKEN": "tok-" + user},
	}
}

// testCtx is a context for one test step.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitInstance polls Get until ok accepts the instance.
func waitInstance(t testing.TB, s *Spawner, user, server string, what string, ok func(spawner.Instance) bool) spawner.Instance {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last spawner.Instance
	var lastErr error
	for time.Now().Before(deadline) {
		last, lastErr = s.Get(context.Background(), user, server)
		if lastErr == nil && ok(last) {
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s/%s never became %s: last %+v, err %v", user, server, what, last, lastErr)
	return last
}

// routable accepts a Running instance with an address.
func routable(i spawner.Instance) bool { return i.Running && i.Addr != "" }

// getPod reads a pod through the admin client.
func getPod(t testing.TB, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := admin.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod %s/%s: %v", ns, name, err)
	}
	return p
}
