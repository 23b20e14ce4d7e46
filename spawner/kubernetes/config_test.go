package kubernetes

import (
	"context"
	"strings"
	"testing"
)

// TestNewFromKubeconfig: a Spawner configured with a kubeconfig path (as
// outside a cluster) reaches the apiserver and serves List.
func TestNewFromKubeconfig(t *testing.T) {
	ns := cp.Namespace(t)
	path, err := cp.WriteKubeconfig("gateway", cp.Admin.BearerToken)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), Config{Kubeconfig: path, Namespace: ns, Deployment: "hgtest"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Ensure(testCtx(t), spec("lena", "lab")); err != nil {
		t.Fatal(err)
	}
	l, err := s.List(testCtx(t))
	if err != nil || len(l) != 1 || l[0].User != "lena" {
		t.Fatalf("List = %+v, %v", l, err)
	}
	if c := s.Config(); c.VolumeSize != DefaultVolumeSize || c.AccessMode != ReadWriteOnce || c.RunAsUser != DefaultRunAsUser {
		t.Errorf("defaults not filled: %+v", c)
	}
}

// TestNewRejectsBadConfig: configuration mistakes are reported by New,
// before any API call.
func TestNewRejectsBadConfig(t *testing.T) {
	for want, cfg := range map[string]Config{
		"deployment":  {Deployment: "Bad_Name"},
		"volume_size": {VolumeSize: "ten gigs"},
		"access_mode": {AccessMode: "ReadOnlyMany"},
		"run_as_user": {RunAsUser: -1},
	} {
		cfg.REST = cp.Admin
		if _, err := New(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: New error %v", want, err)
		}
	}
}
