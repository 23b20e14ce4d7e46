package k8stest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// EnvBin names the environment variable that overrides where the binaries
// are found.
const EnvBin = "HUBGATE_K8S_BIN"

// repoRoot is the checkout this file belongs to.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// buildHint is what a developer runs to get the binaries.
func buildHint() string {
	return "build them with `make k8s-tools` (tools/k8s/build.sh; about 10 minutes cold on 2 cores, " +
		"cached under $HOME/.cache/hubgate/k8s/) or point " + EnvBin + " at a directory holding them"
}

// BinDir returns the directory holding etcd, kube-apiserver, kube-scheduler
// and kwok: $HUBGATE_K8S_BIN if set, else what tools/k8s/build.sh
// --print-bin-dir prints. It checks that each named binary is there and
// says how to build them if not.
func BinDir(names ...string) (string, error) {
	dir := os.Getenv(EnvBin)
	if dir == "" {
		out, err := exec.Command("sh", filepath.Join(repoRoot(), "tools", "k8s", "build.sh"), "--print-bin-dir").Output()
		if err != nil {
			return "", fmt.Errorf("find the Kubernetes test binaries: tools/k8s/build.sh --print-bin-dir: %w", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	var missing []string
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("Kubernetes test binaries missing from %s: %s; %s",
			dir, strings.Join(missing, ", "), buildHint())
	}
	return dir, nil
}

// kwokStages returns kwok's stage files, which tools/k8s/build.sh copies
// next to the bin directory.
func kwokStages(binDir string) ([]string, error) {
	root := filepath.Join(filepath.Dir(binDir), "kwok-stage")
	var files []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".yaml") && d.Name() != "kustomization.yaml" {
			files = append(files, p)
		}
		return nil
	})
	if err == nil && len(files) == 0 {
		err = errors.New("no stage files")
	}
	if err != nil {
		return nil, fmt.Errorf("kwok stage files in %s: %w; %s", root, err, buildHint())
	}
	return files, nil
}
