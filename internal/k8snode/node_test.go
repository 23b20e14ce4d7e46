package k8snode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// buildImages builds the pause and test app images (each script skips an
// image that is up to date).
func buildImages(t *testing.T) {
	t.Helper()
	for _, script := range []string{"../../images/pause/build.sh", "../../images/testapp/build.sh"} {
		out, err := exec.Command(script).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
}

// TestNodeRunsAndServesPods starts etcd, kube-apiserver and a real node
// and checks that a pod with a PVC bound to a hostPath PV runs, serves HTTP
// on its pod IP, keeps a file across delete and re-create, and that
// deleting it stops its container; then that Stop leaves nothing behind.
func TestNodeRunsAndServesPods(t *testing.T) {
	buildImages(t)
	cfg := startControlPlane(t)
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	began := time.Now()
	node, err := Start(ctx, Config{REST: cfg, WorkDir: work, Images: []string{"hubgate/testapp:latest"}, HostPathClass: "k8snode-dynamic"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node %s Ready in %s (pod subnet %s)", node.Name(), time.Since(began).Round(time.Millisecond), node.PodSubnet())
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			if err := node.Stop(); err != nil {
				t.Error(err)
			}
		}
	})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	const ns, class = "k8snode-test", "k8snode-hostpath"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Writable by the test app's uid 1000, on a path it can traverse
	// (t.TempDir's folders are 0700; MkdirTemp's mode is cut by the umask).
	hostDir, err := os.MkdirTemp("", "hubgate-pv-")
	if err == nil {
		t.Cleanup(func() { _ = os.RemoveAll(hostDir) })
		err = os.Chmod(hostDir, 0o777)
	}
	if err != nil {
		t.Fatal(err)
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "k8snode-test-pv"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              class,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir}},
		},
	}
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sc := class
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "home-alice", Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &sc,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = poll(ctx, time.Minute, "PVC home-alice Bound", nil, func(ctx context.Context) error {
		got, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "home-alice", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.Phase != corev1.ClaimBound {
			return fmt.Errorf("phase %s", got.Status.Phase)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v (the controller-manager's binder did not bind it; log: %s)", err, filepath.Join(node.LogDir(), "kube-controller-manager.log"))
	}

	token := randomHex(16)
	first := runPod(ctx, t, cs, node, ns, token, "ws-alice", "home-alice", false)
	base := "http://" + first.Status.PodIP + ":8888/"
	var who struct {
		Hostname string `json:"hostname"`
		User     string `json:"user"`
	}
	body := get(ctx, t, base+"whoami", token)
	if err := json.Unmarshal([]byte(body), &who); err != nil || who.Hostname != "ws-alice" || who.User != "alice" {
		t.Fatalf("whoami from the pod = %s (%v), want hostname ws-alice and user alice", body, err)
	}
	put(ctx, t, base+"files/proof.txt", token, "written in the first pod")
	if b, err := os.ReadFile(filepath.Join(hostDir, "proof.txt")); err != nil || string(b) != "written in the first pod" {
		t.Fatalf("file not on the hostPath PV: %q, %v", b, err)
	}

	deletePod(ctx, t, cs, node, ns, first)
	if _, err := (&http.Client{Timeout: 2 * time.Second}).Get(base + "whoami"); err == nil {
		t.Fatalf("the deleted pod still answers on %s", base)
	}

	second := runPod(ctx, t, cs, node, ns, token, "ws-alice", "home-alice", false)
	if second.UID == first.UID {
		t.Fatal("the re-created pod has the old pod's UID")
	}
	got := get(ctx, t, "http://"+second.Status.PodIP+":8888/files/proof.txt", token)
	if got != "written in the first pod" {
		t.Fatalf("file after re-creating the pod = %q", got)
	}
	logRSS(t, node)
	deletePod(ctx, t, cs, node, ns, second)

	// A claim of the node's HostPathClass is provisioned and bound without
	// a hand-made PV, and a non-root pod (as hubgate runs them) can write.
	sc = "k8snode-dynamic"
	bob := pvc.DeepCopy()
	bob.ObjectMeta = metav1.ObjectMeta{Name: "home-bob", Namespace: ns}
	bob.Spec.StorageClassName = &sc
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, bob, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	third := runPod(ctx, t, cs, node, ns, token, "ws-bob", "home-bob", true)
	put(ctx, t, "http://"+third.Status.PodIP+":8888/files/bob.txt", token, "bob's file")
	bound, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "home-bob", metav1.GetOptions{})
	if err != nil || bound.Status.Phase != corev1.ClaimBound {
		t.Fatalf("home-bob not Bound: %v %v", bound.Status.Phase, err)
	}
	deletePod(ctx, t, cs, node, ns, third)
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "home-bob", metav1.GetOptions{}); err != nil {
		t.Fatalf("the claim went with its pod: %v", err)
	}

	// Stop must leave no bridge, cgroup, mount or shim behind.
	bridge, cgroupRoot, sock := node.bridge, node.cgroupRoot, node.sock
	stopped = true
	if err := node.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/sys/class/net/" + bridge); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bridge %s still exists after Stop (%v)", bridge, err)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", cgroupRoot)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup %s still exists after Stop (%v)", cgroupRoot, err)
	}
	if n := killShims(sock); n != 0 {
		t.Errorf("%d containerd shims were still running after Stop", n)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), work) {
		t.Errorf("mounts under %s remain after Stop", work)
	}
}

// runPod creates pod name (hubgate/testapp with claim mounted at its home,
// as uid 1000 when nonRoot) and waits for it to be Running and Ready with a
// pod IP.
func runPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, node *Node, ns, token, name, claim string, nonRoot bool) *corev1.Pod {
	t.Helper()
	user := strings.TrimPrefix(name, "ws-")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "k8snode-test"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           "hubgate/testapp:latest",
				ImagePullPolicy: corev1.PullNever,
				Env: []corev1.EnvVar{
					{Name: "HUBGATE_TOKEN", Value: token},
					{Name: "HUBGATE_BASE_URL", Value: "/"},
					{Name: "HUBGATE_USER", Value: user},
				},
				Ports:          []corev1.ContainerPort{{ContainerPort: 8888}},
				VolumeMounts:   []corev1.VolumeMount{{Name: "home", MountPath: "/home/hubgate"}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8888)}}, PeriodSeconds: 1},
			}},
			Volumes: []corev1.Volume{{Name: "home", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
			}}},
			TerminationGracePeriodSeconds: new(int64(5)),
		},
	}
	if nonRoot {
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: new(int64(1000)), RunAsGroup: new(int64(1000)), RunAsNonRoot: new(true)}
		pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: new(false)}
	}
	began := time.Now()
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	err := poll(ctx, 2*time.Minute, "pod "+name+" Ready", nil, func(ctx context.Context) error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		got = p
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return fmt.Errorf("phase %s, ip %q, node %q, conditions %v, containers %v", p.Status.Phase, p.Status.PodIP, p.Spec.NodeName, p.Status.Conditions, p.Status.ContainerStatuses)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errors.New("running, not Ready yet")
	})
	if err != nil {
		t.Fatalf("%v\nkubelet log:\n%s", err, tail(filepath.Join(node.LogDir(), "kubelet.log"), 30))
	}
	if got.Spec.NodeName != node.Name() {
		t.Fatalf("pod runs on %q, not on the test node %q", got.Spec.NodeName, node.Name())
	}
	t.Logf("pod %s (uid %s) Ready on %s with IP %s after %s", got.Name, got.UID, got.Spec.NodeName, got.Status.PodIP, time.Since(began).Round(time.Millisecond))
	return got
}

// deletePod deletes pod (gracefully), waits for it to leave the API and
// checks the runtime no longer runs any of its containers.
func deletePod(ctx context.Context, t *testing.T, cs kubernetes.Interface, node *Node, ns string, pod *corev1.Pod) {
	t.Helper()
	if n, err := node.RunningContainers(ctx, string(pod.UID)); err != nil || n != 1 {
		t.Fatalf("before delete the runtime runs %d containers of pod %s (%v), want 1", n, pod.UID, err)
	}
	began := time.Now()
	if err := cs.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := poll(ctx, time.Minute, "pod "+pod.Name+" gone", nil, func(ctx context.Context) error {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return errors.New("still there")
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := node.RunningContainers(ctx, string(pod.UID)); err != nil || n != 0 {
		t.Fatalf("after delete the runtime still runs %d containers of pod %s (%v)", n, pod.UID, err)
	}
	t.Logf("pod %s deleted and its container stopped in %s", pod.UID, time.Since(began).Round(time.Millisecond))
}

// get fetches url with the app's token and returns the body of a 200.
func get(ctx context.Context, t *testing.T, url, token string) string {
	t.Helper()
	return do(ctx, t, http.MethodGet, url, token, "", http.StatusOK)
}

// put stores body at url and expects 201.
func put(ctx context.Context, t *testing.T, url, token, body string) {
	t.Helper()
	do(ctx, t, http.MethodPut, url, token, body, http.StatusCreated)
}

func do(ctx context.Context, t *testing.T, method, url, token, body string, want int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "token "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %s %s", method, url, resp.Status, b)
	}
	return string(b)
}

// logRSS logs the resident memory of the node's daemons.
func logRSS(t *testing.T, node *Node) {
	t.Helper()
	var parts []string
	for _, p := range []*process{node.containerd, node.kubelet, node.controllerManager, node.scheduler} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				parts = append(parts, p.name+" "+strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")))
			}
		}
	}
	t.Logf("RSS with one pod running: %s", strings.Join(parts, ", "))
}
