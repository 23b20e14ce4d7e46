package k8snode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
)

// Binaries are the executables a Node runs. An empty field is looked up by
// FindBinary.
type Binaries struct {
	// Kubelet is the kubelet (tools/k8s/build-node.sh).
	Kubelet string
	// ControllerManager is kube-controller-manager (tools/k8s/build-node.sh).
	ControllerManager string
	// Scheduler is kube-scheduler (tools/k8s/build.sh).
	Scheduler string
	// Containerd is the container runtime (Debian package containerd).
	Containerd string
	// Ctr is containerd's client, used to import images (package containerd).
	Ctr string
	// Runc is the OCI runtime containerd's shim runs (package runc). It
	// must be on PATH for the shim; it is only checked here.
	Runc string
	// CNIBinDir holds the CNI plugins bridge, host-local and loopback
	// (package containernetworking-plugins).
	CNIBinDir string
}

// buildHints say how to get each binary of the tool caches.
var buildHints = map[string]string{
	"kubelet":                 "run tools/k8s/build-node.sh (make k8s-node-tools)",
	"kube-controller-manager": "run tools/k8s/build-node.sh (make k8s-node-tools)",
	"kube-scheduler":          "run tools/k8s/build.sh",
	"kube-apiserver":          "run tools/k8s/build.sh",
	"etcd":                    "run tools/k8s/build.sh",
}

// aptHint says how to get the Debian packages the node needs.
const aptHint = "apt-get install -y containerd runc containernetworking-plugins (make k8s-node-tools)"

// FindBinary returns the newest executable called name in the hubgate tool
// caches: $HUBGATE_K8S_NODE_BIN, then
// $HOME/.cache/hubgate/k8s-node/*/bin and $HOME/.cache/hubgate/k8s/*/bin
// (where tools/k8s/build-node.sh and tools/k8s/build.sh put them).
func FindBinary(name string) (string, error) {
	var dirs []string
	if d := os.Getenv("HUBGATE_K8S_NODE_BIN"); d != "" {
		dirs = append(dirs, d)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find %s: %w", name, err)
	}
	for _, sub := range []string{"k8s-node", "k8s"} {
		found, _ := filepath.Glob(filepath.Join(home, ".cache", "hubgate", sub, "*", "bin"))
		sort.Slice(found, func(i, j int) bool { return newer(found[i], found[j], name) })
		dirs = append(dirs, found...)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	hint, ok := buildHints[name]
	if !ok {
		hint = "run tools/k8s/build.sh and tools/k8s/build-node.sh"
	}
	return "", fmt.Errorf("%s not found in $HUBGATE_K8S_NODE_BIN or %s/.cache/hubgate/{k8s-node,k8s}/*/bin: %s", name, home, hint)
}

// newer reports whether dir a's copy of name is more recent than b's.
func newer(a, b, name string) bool {
	fa, ea := os.Stat(filepath.Join(a, name))
	fb, eb := os.Stat(filepath.Join(b, name))
	if ea != nil || eb != nil {
		return ea == nil
	}
	return fa.ModTime().After(fb.ModTime())
}

// resolve fills the empty fields of b and checks every binary exists; the
// error names each missing one with the command that provides it.
func (b *Binaries) resolve() error {
	var errs []error
	for _, f := range []struct {
		p    *string
		name string
	}{{&b.Kubelet, "kubelet"}, {&b.ControllerManager, "kube-controller-manager"}, {&b.Scheduler, "kube-scheduler"}} {
		if *f.p != "" {
			if err := executable(*f.p); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w: %s", f.name, err, buildHints[f.name]))
			}
			continue
		}
		p, err := FindBinary(f.name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		*f.p = p
	}
	for _, f := range []struct {
		p    *string
		name string
	}{{&b.Containerd, "containerd"}, {&b.Ctr, "ctr"}, {&b.Runc, "runc"}} {
		if *f.p != "" {
			if err := executable(*f.p); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w: %s", f.name, err, aptHint))
			}
			continue
		}
		p, err := exec.LookPath(f.name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s not on PATH: %s", f.name, aptHint))
			continue
		}
		*f.p = p
	}
	if b.CNIBinDir == "" {
		b.CNIBinDir = "/usr/lib/cni"
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(b.CNIBinDir, plugin)); err != nil {
			errs = append(errs, fmt.Errorf("CNI plugin %s missing in %s: %s", plugin, b.CNIBinDir, aptHint))
		}
	}
	return errors.Join(errs...)
}

// executable returns an error unless path is an executable regular file.
func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}
