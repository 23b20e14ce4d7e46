package kubernetes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/hubgate/hubgate/spawner"
)

// loadManifest decodes deploy/kubernetes/<file> into v.
func loadManifest(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// TestRoleSufficesAndNoMore applies the Role, RoleBinding and
// ServiceAccount from deploy/kubernetes, runs every backend operation as
// that ServiceAccount (authenticated by a TokenRequest token, as in a pod),
// and shows that broader requests are Forbidden.
func TestRoleSufficesAndNoMore(t *testing.T) {
	ns := cp.Namespace(t)
	ctx := testCtx(t)
	var role rbacv1.Role
	var binding rbacv1.RoleBinding
	var sa corev1.ServiceAccount
	loadManifest(t, "role.yaml", &role)
	loadManifest(t, "rolebinding.yaml", &binding)
	loadManifest(t, "serviceaccount.yaml", &sa)
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

	s := newSpawner(t, ns, gw, nil)
	exits := watchExits(t, s)
	// Ensure: claim, secret (create + patch), pod; a second pod of the
	// same user; a racing replica adopting (get).
	inst, err := s.Ensure(ctx, spec("kim", "lab"))
	if err != nil {
		t.Fatalf("Ensure as the gateway's ServiceAccount: %v", err)
	}
	if _, err := s.Ensure(ctx, spec("kim", "two")); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	other := newSpawner(t, ns, gw, nil)
	if _, _, err := other.adopt(ctx, spec("kim", "lab"), inst.Name); err != nil {
		t.Fatalf("adopt (get pod): %v", err)
	}
	sec := getPod(t, ns, inst.Name).Spec.Containers[0].EnvFrom[0].SecretRef.Name
	if got, err := admin.CoreV1().Secrets(ns).Get(ctx, sec, metav1.GetOptions{}); err != nil || len(got.OwnerReferences) != 1 {
		t.Fatalf("secret owner not set as the ServiceAccount: %v (owners %+v)", err, got.OwnerReferences)
	}
	waitInstance(t, s, "kim", "lab", "routable", routable)
	if l, err := s.List(ctx); err != nil || len(l) != 2 {
		t.Fatalf("List: %d %v", len(l), err)
	}
	// Logs: authorised (the fake node has no kubelet to serve them, so
	// the apiserver's proxying fails after authorisation).
	if _, err := s.Logs(ctx, "kim", "lab", 10); apierrors.IsForbidden(errors.Unwrap(errors.Unwrap(err))) || err != nil && strings.Contains(err.Error(), "forbidden") {
		t.Errorf("Logs forbidden: %v", err)
	}
	if err := s.Stop(ctx, "kim", "lab"); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	exits.expect(t, "kim", "lab", inst.ID)
	if err := s.Stop(ctx, "kim", "two"); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.RemoveVolume(ctx, "kim"); err != nil {
		t.Fatalf("RemoveVolume: %v", err)
	}
	if err := s.RemoveVolume(ctx, "kim"); !errors.Is(err, spawner.ErrNotFound) {
		t.Fatalf("RemoveVolume of a missing claim: %v", err)
	}

	// Nothing broader.
	cs, err := kubernetes.NewForConfig(gw)
	if err != nil {
		t.Fatal(err)
	}
	other2 := cp.Namespace(t)
	broader := map[string]func() error{
		"list secrets in own namespace": func() error {
			_, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"get a secret": func() error {
			_, err := cs.CoreV1().Secrets(ns).Get(ctx, "anything", metav1.GetOptions{})
			return err
		},
		"list secrets in another namespace": func() error {
			_, err := cs.CoreV1().Secrets(other2).List(ctx, metav1.ListOptions{})
			return err
		},
		"list pods in another namespace": func() error {
			_, err := cs.CoreV1().Pods(other2).List(ctx, metav1.ListOptions{})
			return err
		},
		"create a deployment": func() error {
			d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "x"}}
			_, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
			return err
		},
		"read nodes": func() error {
			_, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		},
		"update a pod": func() error {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: inst.Name}}
			_, err := cs.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{})
			return err
		},
		"exec into a pod": func() error {
			return cs.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Name(inst.Name).
				SubResource("exec").Do(ctx).Error()
		},
		"list claims": func() error {
			_, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"create a role binding": func() error {
			b := binding.DeepCopy()
			b.Name = "escalate"
			_, err := cs.RbacV1().RoleBindings(ns).Create(ctx, b, metav1.CreateOptions{})
			return err
		},
	}
	for what, call := range broader {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want Forbidden", what, err)
		}
	}
}
