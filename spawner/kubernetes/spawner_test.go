package kubernetes

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/hubgate/hubgate/spawner"
)

// TestEnsureShapes checks the claim, Secret and pod Ensure creates: the
// security settings, no secret in the pod spec, the Secret owned by the
// pod, labels and annotations, scheduling hints and resources; and that the
// pod becomes routable once kwok runs it.
func TestEnsureShapes(t *testing.T) {
	ns := cp.Namespace(t)
	s := newSpawner(t, ns, nil, func(c *Config) { c.StorageClass = "fast"; c.VolumeSize = "3Gi" })
	sp := spec("alice.smith@example.org", "lab")
	sp.Env = map[string]string{"HUBGATE_TOKEN": "hubgate-secret-4d2f", "GITHUB_TOKEN": "ghp_secret9c1e", "LANG": "C.UTF-8"}
	sp.Limits = spawner.Limits{MemoryBytes: 1 << 30, NanoCPUs: 1_500_000_000, Pids: 256}
	sp.PullPolicy = spawner.PullNever
	sp.NodeSelector = map[string]string{"hubgate.test/gpu": "yes"}
	sp.Tolerations = []spawner.Toleration{{Key: "nvidia.com/gpu", Operator: "exists", Effect: "NoSchedule"}}
	sp.ExtendedResources = map[string]int64{"nvidia.com/gpu": 1}
	sp.Meta = map[string]string{"idle_timeout": "2h0m0s"}
	sp.Cmd = []string{"--flag"}

	inst, err := s.Ensure(testCtx(t), sp)
	if err != nil {
		t.Fatal(err)
	}
	name := spawner.PodName("hgtest", sp.User, "lab")
	if inst.Name != name || inst.User != sp.User || inst.Server != "lab" || inst.Nonce != sp.Nonce || inst.Image != testImage {
		t.Errorf("instance = %+v", inst)
	}
	if inst.Meta["idle_timeout"] != "2h0m0s" {
		t.Errorf("meta = %v", inst.Meta)
	}

	// The claim.
	claim, err := admin.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), spawner.ClaimName("hgtest", sp.User), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if got := claim.Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse("3Gi")) != 0 {
		t.Errorf("claim size %s, want 3Gi", got.String())
	}
	if claim.Spec.StorageClassName == nil || *claim.Spec.StorageClassName != "fast" ||
		len(claim.Spec.AccessModes) != 1 || claim.Spec.AccessModes[0] != corev1.ReadWriteOnce {
		t.Errorf("claim class %v modes %v", claim.Spec.StorageClassName, claim.Spec.AccessModes)
	}
	if claim.Annotations[AnnotationUser] != sp.User || claim.Labels[LabelUser] != UserLabel(sp.User) {
		t.Errorf("claim labels %v annotations %v", claim.Labels, claim.Annotations)
	}

	// The pod, as kubectl get pod -o yaml would show it: no secret in it.
	pod := getPod(t, ns, name)
	out, _ := yaml.Marshal(pod)
	for _, secret := range []string{"hubgate-secret-4d2f", "ghp_secret9c1e"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("pod YAML contains the secret %q:\n%s", secret, out)
		}
	}
	c := pod.Spec.Containers[0]
	if len(c.Env) != 1 || c.Env[0].Name != "HOME" || c.Env[0].Value != "/home/hubgate" {
		t.Errorf("literal env = %v, want only HOME", c.Env)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil {
		t.Fatalf("envFrom = %v", c.EnvFrom)
	}
	secName := c.EnvFrom[0].SecretRef.Name
	psc, csc := pod.Spec.SecurityContext, c.SecurityContext
	switch {
	case psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 1000:
		t.Errorf("pod security context %+v", psc)
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("seccomp %+v", psc.SeccompProfile)
	case csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.Capabilities == nil || len(csc.Capabilities.Drop) != 1 || csc.Capabilities.Drop[0] != "ALL":
		t.Errorf("container security context %+v", csc)
	case pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken:
		t.Errorf("automountServiceAccountToken = %v", pod.Spec.AutomountServiceAccountToken)
	case pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks:
		t.Errorf("enableServiceLinks = %v", pod.Spec.EnableServiceLinks)
	case pod.Spec.RestartPolicy != corev1.RestartPolicyNever:
		t.Errorf("restartPolicy = %s", pod.Spec.RestartPolicy)
	}
	if c.ImagePullPolicy != corev1.PullNever {
		t.Errorf("pull policy %s", c.ImagePullPolicy)
	}
	if len(c.Args) != 1 || c.Args[0] != "--flag" || len(c.Command) != 0 {
		t.Errorf("command %v args %v", c.Command, c.Args)
	}
	if pod.Spec.NodeSelector["hubgate.test/gpu"] != "yes" {
		t.Errorf("node selector %v", pod.Spec.NodeSelector)
	}
	// (The DefaultTolerationSeconds admission plugin adds the
	// not-ready/unreachable ones.)
	gpuTolerated := false
	for _, tol := range pod.Spec.Tolerations {
		if tol.Key == "nvidia.com/gpu" {
			gpuTolerated = tol.Operator == corev1.TolerationOpExists && tol.Effect == corev1.TaintEffectNoSchedule && tol.Value == ""
		}
	}
	if !gpuTolerated {
		t.Errorf("tolerations %+v", pod.Spec.Tolerations)
	}
	for _, rl := range []corev1.ResourceList{c.Resources.Limits, c.Resources.Requests} {
		mem, cpu, gpu := rl[corev1.ResourceMemory], rl[corev1.ResourceCPU], rl["nvidia.com/gpu"]
		if mem.Value() != 1<<30 || cpu.MilliValue() != 1500 || gpu.Value() != 1 {
			t.Errorf("resources %v", rl)
		}
	}
	if pod.Spec.Affinity != nil {
		t.Errorf("first pod of a user has affinity %+v", pod.Spec.Affinity)
	}
	wantLabels := map[string]string{LabelDeployment: "hgtest", LabelUser: UserLabel(sp.User), LabelServer: "lab", LabelPort: "8888"}
	for k, v := range wantLabels {
		if pod.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, pod.Labels[k], v)
		}
	}
	if pod.Annotations[AnnotationUser] != sp.User || pod.Annotations[AnnotationNonce] != sp.Nonce ||
		pod.Annotations[AnnotationImage] != testImage || pod.Annotations[AnnotationMetaPrefix+"idle_timeout"] != "2h0m0s" {
		t.Errorf("annotations %v", pod.Annotations)
	}
	if v := pod.Spec.Volumes[0].PersistentVolumeClaim; v == nil || v.ClaimName != claim.Name || c.VolumeMounts[0].MountPath != "/home/hubgate" {
		t.Errorf("volume %+v mount %+v", pod.Spec.Volumes, c.VolumeMounts)
	}

	// The Secret: the env, owned by the pod.
	sec, err := admin.CoreV1().Secrets(ns).Get(context.Background(), secName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("secret: %v", err)
	}
	if string(sec.Data["HUBGATE_TOKEN"]) != "hubgate-secret-4d2f" || string(sec.Data["GITHUB_TOKEN"]) != "ghp_secret9c1e" {
		t.Errorf("secret data keys %v", keys(sec.Data))
	}
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].UID != pod.UID || sec.OwnerReferences[0].Kind != "Pod" {
		t.Errorf("secret owners %+v, want pod %s", sec.OwnerReferences, pod.UID)
	}

	// kwok runs it (the node has the GPU label and resources).
	got := waitInstance(t, s, sp.User, "lab", "routable", routable)
	if !strings.HasSuffix(got.Addr, ":8888") || got.Status != "running" || got.ID != string(pod.UID) || got.Started.IsZero() {
		t.Errorf("running instance %+v", got)
	}
}

// TestAffinityForSecondPodOnReadWriteOnce: with ReadWriteOnce claims a
// user's second pod must follow the first to its node; with ReadWriteMany
// there is no such constraint.
func TestAffinityForSecondPodOnReadWriteOnce(t *testing.T) {
	for _, mode := range []string{ReadWriteOnce, ReadWriteMany} {
		t.Run(mode, func(t *testing.T) {
			ns := cp.Namespace(t)
			s := newSpawner(t, ns, nil, func(c *Config) { c.AccessMode = mode })
			if _, err := s.Ensure(testCtx(t), spec("bob", "one")); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Ensure(testCtx(t), spec("bob", "two")); err != nil {
				t.Fatal(err)
			}
			first := getPod(t, ns, spawner.PodName("hgtest", "bob", "one"))
			second := getPod(t, ns, spawner.PodName("hgtest", "bob", "two"))
			if first.Spec.Affinity != nil {
				t.Errorf("first pod has affinity %+v", first.Spec.Affinity)
			}
			if mode == ReadWriteMany {
				if second.Spec.Affinity != nil {
					t.Errorf("ReadWriteMany: second pod has affinity %+v", second.Spec.Affinity)
				}
				return
			}
			a := second.Spec.Affinity
			if a == nil || a.PodAffinity == nil || len(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
				t.Fatalf("ReadWriteOnce: second pod affinity %+v", a)
			}
			term := a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
			if term.TopologyKey != "kubernetes.io/hostname" || term.LabelSelector.MatchLabels[LabelUser] != "bob" ||
				term.LabelSelector.MatchLabels[LabelDeployment] != "hgtest" {
				t.Errorf("affinity term %+v", term)
			}
			// And the scheduler honours it: both run on the one node.
			waitInstance(t, s, "bob", "two", "routable", routable)
			if p := getPod(t, ns, second.Name); p.Spec.NodeName != getPod(t, ns, first.Name).Spec.NodeName {
				t.Errorf("second pod on %q, first on %q", p.Spec.NodeName, first.Spec.NodeName)
			}
		})
	}
}

// TestRacingEnsureYieldsOnePod: 30 concurrent Ensures through two Spawners
// (two gateway replicas) make one pod, one Secret, one claim, and every
// caller gets that pod.
func TestRacingEnsureYieldsOnePod(t *testing.T) {
	ns := cp.Namespace(t)
	replicas := []*Spawner{newSpawner(t, ns, nil, nil), newSpawner(t, ns, nil, nil)}
	var wg sync.WaitGroup
	insts := make([]spawner.Instance, 30)
	errs := make([]error, 30)
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sp := spec("carol", "lab")
			sp.Nonce = "nonce-" + string(rune('a'+i%26)) + strings.Repeat("x", i)
			insts[i], errs[i] = replicas[i%2].Ensure(testCtx(t), sp)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Ensure %d: %v", i, err)
		}
		if insts[i].ID != insts[0].ID || insts[i].Nonce != insts[0].Nonce {
			t.Errorf("Ensure %d got pod %s nonce %s, Ensure 0 got %s %s", i, insts[i].ID, insts[i].Nonce, insts[0].ID, insts[0].Nonce)
		}
	}
	ctx := testCtx(t)
	pods, _ := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	secrets, _ := admin.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	claims, _ := admin.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if len(pods.Items) != 1 || len(secrets.Items) != 1 || len(claims.Items) != 1 {
		t.Fatalf("%d pods, %d secrets, %d claims; want 1 each", len(pods.Items), len(secrets.Items), len(claims.Items))
	}
	if ref := pods.Items[0].Spec.Containers[0].EnvFrom[0].SecretRef.Name; ref != secrets.Items[0].Name {
		t.Errorf("pod reads secret %s, the one left is %s", ref, secrets.Items[0].Name)
	}
	if pods.Items[0].Annotations[AnnotationNonce] != insts[0].Nonce {
		t.Errorf("pod nonce %s, callers got %s", pods.Items[0].Annotations[AnnotationNonce], insts[0].Nonce)
	}
}

// TestPendingReasonVisible: a pod asking for more memory than any node has
// shows the scheduler's reason in Status, which the gateway shows users.
func TestPendingReasonVisible(t *testing.T) {
	ns := cp.Namespace(t)
	s := newSpawner(t, ns, nil, nil)
	sp := spec("dave", "big")
	sp.Limits.MemoryBytes = 100 << 30 // the node has 8 GiB
	inst, err := s.Ensure(testCtx(t), sp)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Running || inst.Addr != "" {
		t.Errorf("fresh pod reported running: %+v", inst)
	}
	got := waitInstance(t, s, "dave", "big", "unschedulable", func(i spawner.Instance) bool {
		// (Until the test's volume binder binds the claim the scheduler
		// names that instead.)
		return strings.HasPrefix(i.Status, "pending: Unschedulable: ") && strings.Contains(i.Status, "Insufficient memory")
	})
	if got.Running || got.Addr != "" {
		t.Errorf("status %q running %v addr %q", got.Status, got.Running, got.Addr)
	}
	t.Logf("status: %s", got.Status)
}

// TestFailedPodIsRecreatedOnSameClaim: a pod that failed (evicted) is
// reported through WatchExits, and the next Ensure replaces it, on the same
// claim, with a fresh Secret.
func TestFailedPodIsRecreatedOnSameClaim(t *testing.T) {
	ns := cp.Namespace(t)
	s := newSpawner(t, ns, nil, nil)
	exits := watchExits(t, s)
	first, err := s.Ensure(testCtx(t), spec("erin", "lab"))
	if err != nil {
		t.Fatal(err)
	}
	waitInstance(t, s, "erin", "lab", "routable", routable)
	name := spawner.PodName("hgtest", "erin", "lab")
	p := getPod(t, ns, name)
	oldSecret := p.Spec.Containers[0].EnvFrom[0].SecretRef.Name
	p.Status.Phase = corev1.PodFailed
	p.Status.Reason = "Evicted"
	p.Status.Message = "The node was low on resource: memory."
	if _, err := admin.CoreV1().Pods(ns).UpdateStatus(testCtx(t), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	exits.expect(t, "erin", "lab", first.ID)
	got := waitInstance(t, s, "erin", "lab", "failed", func(i spawner.Instance) bool { return strings.HasPrefix(i.Status, "failed") })
	if !strings.Contains(got.Status, "Evicted") || got.Running || got.Addr != "" {
		t.Errorf("failed instance %+v", got)
	}
	sp := spec("erin", "lab")
	sp.Nonce = "second-nonce"
	second, err := s.Ensure(testCtx(t), sp)
	if err != nil {
		t.Fatal(err)
	}
	if second.ID == first.ID || second.Nonce != "second-nonce" {
		t.Errorf("Ensure after failure returned %+v (first was %s)", second, first.ID)
	}
	np := getPod(t, ns, name)
	if np.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != spawner.ClaimName("hgtest", "erin") {
		t.Errorf("new pod claim %v", np.Spec.Volumes[0])
	}
	if _, err := admin.CoreV1().Secrets(ns).Get(testCtx(t), oldSecret, metav1.GetOptions{}); err == nil {
		t.Errorf("old pod's secret %s still exists", oldSecret)
	}
}

// TestStopKeepsClaim: Stop deletes the pod and its Secret and keeps the
// claim; RemoveVolume refuses while a pod exists and removes it after.
func TestStopKeepsClaim(t *testing.T) {
	ns := cp.Namespace(t)
	s := newSpawner(t, ns, nil, nil)
	exits := watchExits(t, s)
	inst, err := s.Ensure(testCtx(t), spec("frank", "lab"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveVolume(testCtx(t), "frank"); err == nil || !strings.Contains(err.Error(), "used by pod") {
		t.Errorf("RemoveVolume with a pod: %v", err)
	}
	if err := s.Stop(testCtx(t), "frank", "lab"); err != nil {
		t.Fatal(err)
	}
	exits.expect(t, "frank", "lab", inst.ID)
	if _, err := s.Get(testCtx(t), "frank", "lab"); !errors.Is(err, spawner.ErrNotFound) {
		t.Errorf("Get after Stop: %v", err)
	}
	ctx := testCtx(t)
	if secrets, _ := admin.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); len(secrets.Items) != 0 {
		t.Errorf("secrets left after Stop: %d", len(secrets.Items))
	}
	if _, err := admin.CoreV1().PersistentVolumeClaims(ns).Get(ctx, spawner.ClaimName("hgtest", "frank"), metav1.GetOptions{}); err != nil {
		t.Errorf("claim gone after Stop: %v", err)
	}
	if err := s.Stop(ctx, "frank", "lab"); !errors.Is(err, spawner.ErrNotFound) {
		t.Errorf("second Stop: %v", err)
	}
	if err := s.RemoveVolume(ctx, "frank"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveVolume(ctx, "frank"); !errors.Is(err, spawner.ErrNotFound) {
		t.Errorf("second RemoveVolume: %v", err)
	}
}

// TestExitOnDelete: a pod deleted behind the gateway's back (kubectl
// delete) is reported at once.
func TestExitOnDelete(t *testing.T) {
	ns := cp.Namespace(t)
	s := newSpawner(t, ns, nil, nil)
	exits := watchExits(t, s)
	inst, err := s.Ensure(testCtx(t), spec("gina", "lab"))
	if err != nil {
		t.Fatal(err)
	}
	waitInstance(t, s, "gina", "lab", "routable", routable)
	if err := admin.CoreV1().Pods(ns).Delete(testCtx(t), inst.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	exits.expect(t, "gina", "lab", inst.ID)
}

// exitLog collects WatchExits calls.
type exitLog struct {
	ch chan [3]string
}

func watchExits(t *testing.T, s *Spawner) *exitLog {
	ctx, cancel := context.WithCancel(context.Background())
	l := &exitLog{ch: make(chan [3]string, 100)}
	done := make(chan error, 1)
	go func() {
		done <- s.WatchExits(ctx, func(user, server, id string) { l.ch <- [3]string{user, server, id} })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("WatchExits returned %v", err)
		}
	})
	return l
}

func (l *exitLog) expect(t *testing.T, user, server, id string) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e := <-l.ch:
			if e == [3]string{user, server, id} {
				return
			}
		case <-timeout:
			t.Fatalf("no exit reported for %s/%s %s", user, server, id)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
