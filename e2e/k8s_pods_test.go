package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/hubgate/hubgate/internal/k8snode"
	"github.com/hubgate/hubgate/internal/k8stest"
)

// TestServersAsPodsOnARealNode runs the gateway with the kubernetes
// backend against a real kube-apiserver and a real node (kubelet +
// containerd), authenticated as its own ServiceAccount bound to the Role in
// deploy/kubernetes: log in, the first request starts a pod, the test app
// answers through hubgate, a websocket echoes, a file survives the pod's
// deletion, and culling deletes the pod and keeps the claim.
func TestServersAsPodsOnARealNode(t *testing.T) {
	cp, err := k8stest.Start(k8stest.Options{})
	if err != nil {
		t.Fatalf("control plane: %v", err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	node, err := k8snode.Start(ctx, k8snode.Config{
		REST: cp.Admin, WorkDir: t.TempDir(), Images: []string{"hubgate/testapp:latest"}, HostPathClass: "hubgate-test",
	})
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	t.Cleanup(func() { _ = node.Stop() })

	ns := cp.Namespace(t)
	admin := cp.Client()
	var role rbacv1.Role
	var binding rbacv1.RoleBinding
	var sa corev1.ServiceAccount
	for file, v := range map[string]any{"role.yaml": &role, "rolebinding.yaml": &binding, "serviceaccount.yaml": &sa} {
		data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "kubernetes", file))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(data, v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	role.Namespace, binding.Namespace, sa.Namespace = "", "", ""
	for i := range binding.Subjects {
		binding.Subjects[i].Namespace = ns
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gw, err := cp.ServiceAccountConfig(ctx, ns, sa.Name)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cp.WriteKubeconfig("gateway", gw.BearerToken)
	if err != nil {
		t.Fatal(err)
	}

	policy := strings.Replace(basePolicy, `    port: 8888`, "    port: 8888\n    pull: never", 1)
	policy = strings.Replace(policy, "images: [notebook]", "images: [notebook]\n    idle_timeout: 6s", 1)
	g := newGateway(t, gwOptions{policy: policy, env: map[string]string{"HUBGATE_CULL_INTERVAL": "1s"}})
	g.runWith(authCaddyfile(t, g.dir, "kubernetes {\n\tnamespace "+ns+"\n\tkubeconfig "+kubeconfig+"\n\tstorage_class hubgate-test\n\tvolume_size 1Gi\n}\n"))

	alice := g.login("alice")
	resp, body := g.getReady(alice, "/user/alice/notebook/whoami")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"alice"`) {
		t.Fatalf("first request through a pod: %d %s\n%s", resp.StatusCode, body, g.logs())
	}
	pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Status.PodIP == "" {
		t.Fatalf("pods: %v %+v", err, pods)
	}
	podUID := string(pods.Items[0].UID)
	// A websocket echoes through the pod.
	wctx, ws := g.dialEcho(alice, "alice")
	if err := ws.Write(wctx, websocket.MessageText, []byte("hi pod")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(wctx); err != nil || string(msg) != "hi pod" {
		t.Fatalf("echo through the pod: %q %v", msg, err)
	}
	ws.CloseNow()
	// A file written through hubgate survives the pod's deletion: the next
	// request starts a new pod on the same claim.
	if resp, _ := g.do(alice, http.MethodPut, "/user/alice/notebook/files/kept.txt", strings.NewReader("kept")); resp.StatusCode/100 != 2 {
		t.Fatalf("write: %d", resp.StatusCode)
	}
	zero := int64(0)
	if err := admin.CoreV1().Pods(ns).Delete(ctx, pods.Items[0].Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, body := g.getReady(alice, "/user/alice/notebook/files/kept.txt")
		if resp.StatusCode == http.StatusOK && body == "kept" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the file after the pod was deleted: %d %q\n%s", resp.StatusCode, body, g.logs())
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The kubelet stops a force-deleted pod's containers shortly after.
	for i := 0; ; i++ {
		n, _ := node.RunningContainers(ctx, podUID)
		if n == 0 {
			break
		}
		if i == 60 {
			t.Errorf("the deleted pod still runs %d containers after 30s", n)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Idle culling deletes the pod and keeps the claim.
	deadline = time.Now().Add(60 * time.Second)
	for {
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err == nil && len(pods.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the idle pod was not culled: %v\n%s", err, g.logs())
		}
		time.Sleep(time.Second)
	}
	claims, err := admin.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(claims.Items) != 1 {
		t.Fatalf("claims after culling: %v %+v", err, claims)
	}
	if !g.waitLog(`"msg":"cull"`, 5*time.Second) {
		t.Error("the cull is not audited")
	}
}
