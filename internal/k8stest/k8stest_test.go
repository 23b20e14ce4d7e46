package k8stest

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestControlPlaneEnforcesRBAC starts etcd and kube-apiserver alone and
// checks that the admin may do anything while a token user and a fresh
// ServiceAccount, bound to nothing, are refused.
func TestControlPlaneEnforcesRBAC(t *testing.T) {
	start := time.Now()
	cp, err := Start(Options{Users: []string{"nobody"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("etcd + kube-apiserver ready in %s", time.Since(start).Round(time.Millisecond))
	defer func() {
		s := time.Now()
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
		t.Logf("stopped in %s", time.Since(s).Round(time.Millisecond))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := cp.Client().Discovery().ServerVersion()
	if err != nil || v.GitVersion != "v1.37.2" {
		t.Fatalf("server version %v %v", v, err)
	}
	ns := cp.Namespace(t)
	user, err := cp.UserConfig("nobody")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := cp.ServiceAccountConfig(ctx, ns, "gw")
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*rest.Config{"user": user, "service account": sa} {
		cs := kubernetes.NewForConfigOrDie(cfg)
		_, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s without bindings: list pods: %v, want Forbidden", name, err)
		}
	}
	if _, err := cp.UserConfig("stranger"); err == nil {
		t.Error("UserConfig of an undeclared user succeeded")
	}
}
