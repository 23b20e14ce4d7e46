package k8snode

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
)

func TestZZControlPlane(t *testing.T) {
	began := time.Now()
	cfg := startControlPlane(t)
	t.Logf("ready in %s", time.Since(began))
	cs, _ := kubernetes.NewForConfig(cfg)
	v, err := cs.Discovery().ServerVersion()
	t.Log(v, err)
	_ = context.Background()
}
