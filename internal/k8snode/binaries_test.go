package k8snode

import (
	"context"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// TestStartNamesMissingTools checks that Start refuses to run without its
// tools and says, for each missing one, what provides it.
func TestStartNamesMissingTools(t *testing.T) {
	_, err := Start(context.Background(), Config{
		REST:    &rest.Config{Host: "https://127.0.0.1:1"},
		WorkDir: t.TempDir(),
		Binaries: Binaries{
			Kubelet:   "/nonexistent/kubelet",
			Ctr:       "/nonexistent/ctr",
			CNIBinDir: t.TempDir(),
		},
	})
	if err == nil {
		t.Fatal("Start succeeded without a kubelet, ctr or CNI plugins")
	}
	for _, want := range []string{
		"kubelet: stat /nonexistent/kubelet", "tools/k8s/build-node.sh",
		"ctr: stat /nonexistent/ctr", "CNI plugin bridge missing", "containernetworking-plugins",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}
