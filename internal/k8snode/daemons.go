package k8snode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// startContainerd writes the CNI network and containerd's config and starts
// containerd, returning once its CRI answers.
func (n *Node) startContainerd(ctx context.Context) error {
	cdir := filepath.Join(n.dir, "containerd")
	cniConf := filepath.Join(n.dir, "cni", "net.d")
	conflist, err := cniConflist("hubgate-"+n.bridge, n.bridge, n.subnet, filepath.Join(n.dir, "cni", "ipam"))
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(cniConf, "10-hubgate.conflist"), conflist); err != nil {
		return err
	}
	conf := filepath.Join(cdir, "config.toml")
	sandbox := normalizeImage(n.cfg.PauseImage)
	if err := writeFile(conf, []byte(containerdConfig(cdir, sandbox, n.cfg.Binaries.CNIBinDir, cniConf))); err != nil {
		return err
	}
	p, err := startProcess("containerd", n.logDir, n.cfg.Binaries.Containerd, "--config", conf)
	if err != nil {
		return err
	}
	n.containerd = p
	c, err := dialCRI(n.sock)
	if err != nil {
		return err
	}
	defer c.close()
	return poll(ctx, 30*time.Second, "containerd's CRI", p, func(ctx context.Context) error { return c.ready(ctx) })
}

// LoadImages copies Docker images into the node's containerd (docker save
// | ctr images import), where pods with imagePullPolicy Never or
// IfNotPresent find them.
func (n *Node) LoadImages(ctx context.Context, images ...string) error {
	docker, err := exec.LookPath("docker")
	if err != nil {
		return errors.New("docker not on PATH: the node's images come from the local Docker engine (apt-get install docker.io)")
	}
	for _, img := range images {
		if err := n.loadImage(ctx, docker, img); err != nil {
			return err
		}
	}
	return nil
}

// loadImage pipes one docker save into ctr import.
func (n *Node) loadImage(ctx context.Context, docker, img string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	save := exec.CommandContext(ctx, docker, "save", img)
	imp := exec.CommandContext(ctx, n.cfg.Binaries.Ctr, "--address", n.sock, "--namespace", "k8s.io",
		"images", "import", "--snapshotter", "overlayfs", "-")
	pr, pw := io.Pipe()
	save.Stdout = pw
	imp.Stdin = pr
	var saveErr, impOut limitedBuffer
	save.Stderr = &saveErr
	imp.Stdout = &impOut
	imp.Stderr = &impOut
	if err := imp.Start(); err != nil {
		return fmt.Errorf("load image %s: start ctr: %w", img, err)
	}
	serr := save.Run()
	pw.CloseWithError(serr)
	ierr := imp.Wait()
	if serr != nil {
		return fmt.Errorf("load image %s: docker save: %w: %s (build it first, e.g. images/*/build.sh)", img, serr, saveErr.String())
	}
	if ierr != nil {
		return fmt.Errorf("load image %s: ctr import: %w: %s", img, ierr, impOut.String())
	}
	return nil
}

// startKubelet writes the kubelet's kubeconfig and config and starts it.
func (n *Node) startKubelet() error {
	kdir := filepath.Join(n.dir, "kubelet")
	kubeconfig := filepath.Join(n.dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, n.cfg.REST); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	healthz, err := freePort()
	if err != nil {
		return err
	}
	if err := makeCgroupRoot(n.cgroupRoot); err != nil {
		return err
	}
	conf := filepath.Join(kdir, "config.yaml")
	if err := writeFile(conf, []byte(kubeletConfig(port, healthz, n.cgroupRoot, n.sock, filepath.Join(kdir, "pod-logs"), filepath.Join(kdir, "volume-plugins")))); err != nil {
		return err
	}
	p, err := startProcess("kubelet", n.logDir, n.cfg.Binaries.Kubelet,
		"--config", conf,
		"--kubeconfig", kubeconfig,
		"--root-dir", filepath.Join(kdir, "root"),
		"--cert-dir", filepath.Join(kdir, "pki"),
		"--hostname-override", n.name,
		"--v", "2")
	if err != nil {
		return err
	}
	n.kubelet = p
	return nil
}

// startControlPlane starts kube-controller-manager and kube-scheduler
// unless the caller runs its own.
func (n *Node) startControlPlane() error {
	kubeconfig := filepath.Join(n.dir, "kubeconfig")
	if !n.cfg.ExternalControllerManager {
		p, err := startProcess("kube-controller-manager", n.logDir, n.cfg.Binaries.ControllerManager,
			"--kubeconfig", kubeconfig,
			"--authentication-kubeconfig", kubeconfig,
			"--authorization-kubeconfig", kubeconfig,
			"--leader-elect=false",
			"--secure-port", "0",
			"--controllers", "*",
			"--v", "1")
		if err != nil {
			return err
		}
		n.controllerManager = p
	}
	if !n.cfg.ExternalScheduler {
		p, err := startProcess("kube-scheduler", n.logDir, n.cfg.Binaries.Scheduler,
			"--kubeconfig", kubeconfig,
			"--authentication-kubeconfig", kubeconfig,
			"--authorization-kubeconfig", kubeconfig,
			"--leader-elect=false",
			"--secure-port", "0",
			"--v", "1")
		if err != nil {
			return err
		}
		n.scheduler = p
	}
	return nil
}

// waitReady waits for the Node to be Ready without the not-ready and
// uninitialized taints, checking that every daemon still runs.
func (n *Node) waitReady(ctx context.Context) error {
	return poll(ctx, 3*time.Minute, "node "+n.name+" Ready", nil, func(ctx context.Context) error {
		for _, p := range []*process{n.containerd, n.kubelet, n.controllerManager, n.scheduler} {
			if p != nil {
				if err := p.exited(); err != nil {
					return permanent{err}
				}
			}
		}
		node, err := n.client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get node: %w", err)
		}
		ready := false
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status != corev1.ConditionTrue {
					return fmt.Errorf("node Ready=%s: %s", c.Status, c.Message)
				}
				ready = true
			}
		}
		if !ready {
			return errors.New("node has no Ready condition yet")
		}
		for _, t := range node.Spec.Taints {
			if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
				return fmt.Errorf("node still tainted %s:%s", t.Key, t.Effect)
			}
		}
		return nil
	})
}

// deleteNodeObject removes the Node from the API (its pods go with it).
func (n *Node) deleteNodeObject(ctx context.Context) error {
	err := n.client.CoreV1().Nodes().Delete(ctx, n.name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete node object: %w", err)
	}
	return nil
}

// poll calls check every 250 ms until it returns nil, a permanent error,
// limit passes, ctx ends or p (when set) exits.
func poll(ctx context.Context, limit time.Duration, what string, p *process, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		if p != nil {
			if err := p.exited(); err != nil {
				return fmt.Errorf("wait for %s: %w", what, err)
			}
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		var perm permanent
		if errors.As(last, &perm) {
			return fmt.Errorf("wait for %s: %w", what, perm.err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// permanent marks an error that ends a poll at once.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

// normalizeImage gives a Docker short name the fully qualified form
// containerd stores it under (hubgate/pause:latest ->
// docker.io/hubgate/pause:latest).
func normalizeImage(img string) string {
	name, tag := img, ":latest"
	if i := strings.LastIndexByte(img, ':'); i > strings.LastIndexByte(img, '/') {
		name, tag = img[:i], img[i:]
	}
	first, _, hasSlash := strings.Cut(name, "/")
	switch {
	case !hasSlash:
		name = "docker.io/library/" + name
	case !strings.ContainsAny(first, ".:") && first != "localhost":
		name = "docker.io/" + name
	}
	return name + tag
}

// limitedBuffer keeps the first 8 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 8<<10 - len(l.b); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		l.b = append(l.b, p[:room]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
