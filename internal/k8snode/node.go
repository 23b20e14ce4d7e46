// Package k8snode runs a real Kubernetes node on this machine for tests: a
// private containerd (its own root, state and socket, not Docker's), a
// bridge CNI network on a private 10.244.N.0/24, a kubelet registered with a
// test API server, and, unless the caller has its own, kube-scheduler and
// kube-controller-manager (PVC binding, garbage collection, node
// lifecycle). Images come from the local Docker engine (docker save into the
// node's containerd); there is no registry.
//
// The host must be Linux with cgroup v1 or v2, run as root, and have the
// Debian packages containerd, runc and containernetworking-plugins plus
// kubelet, kube-scheduler and kube-controller-manager from
// tools/k8s/build-node.sh. Start fails with the command that provides
// whatever is missing.
package k8snode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Config says how to start a Node.
type Config struct {
	// REST reaches the API server with admin rights; the node's daemons use
	// the same credentials (written to a kubeconfig in WorkDir).
	REST *rest.Config
	// WorkDir holds everything the node writes: containerd's root and
	// state, the kubelet's root, CNI state, configs and logs/. It should be
	// empty; Stop removes all but logs/.
	WorkDir string
	// Name is the Node's name; default "hubgate-node-<random>".
	Name string
	// PodSubnet is the pods' CIDR; default the first free 10.244.N.0/24.
	PodSubnet string
	// PauseImage is the Docker image used as the sandbox image; default
	// hubgate/pause:latest (images/pause/build.sh builds it).
	PauseImage string
	// Images are more Docker images loaded into the node before Start
	// returns (LoadImages adds more later).
	Images []string
	// ExternalScheduler, when true, starts no kube-scheduler (the caller
	// runs one against the same API server).
	ExternalScheduler bool
	// ExternalControllerManager, when true, starts no
	// kube-controller-manager.
	ExternalControllerManager bool
	// HostPathClass, when set, names a StorageClass Start creates and
	// provisions: each PVC of that class without a volume gets a Retain
	// hostPath PV on a new directory (mode 0777) under WorkDir, bound to it
	// (like a dynamic provisioner; Stop deletes the class and those PVs).
	HostPathClass string
	// Binaries overrides where the executables are; empty fields are found
	// in the tool caches and on PATH.
	Binaries Binaries
}

// Node is a running node; Stop it.
type Node struct {
	cfg        Config
	name       string
	subnet     string
	bridge     string
	cgroupRoot string
	dir        string // WorkDir/node: everything Stop removes
	logDir     string
	sock       string
	client     kubernetes.Interface

	containerd, kubelet, scheduler, controllerManager *process

	stopProvisioner context.CancelFunc
	provisionLog    *os.File

	stopOnce sync.Once
	stopErr  error
}

// Name is the Node's name in the API.
func (n *Node) Name() string { return n.name }

// PodSubnet is the CIDR pods get their IPs from.
func (n *Node) PodSubnet() string { return n.subnet }

// LogDir holds one log file per daemon.
func (n *Node) LogDir() string { return n.logDir }

// ContainerdAddress is the node's containerd socket (for ctr -a).
func (n *Node) ContainerdAddress() string { return n.sock }

// RunningContainers counts the containers of the pod with uid that the
// node's runtime runs right now (what a deleted pod must drop to 0).
func (n *Node) RunningContainers(ctx context.Context, podUID string) (int, error) {
	c, err := dialCRI(n.sock)
	if err != nil {
		return 0, err
	}
	defer c.close()
	return c.runningContainers(ctx, map[string]string{"io.kubernetes.pod.uid": podUID})
}

// Start starts the node and returns once the Node is Ready and schedulable
// (or ctx ends). On error everything started is stopped again.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.REST == nil || cfg.WorkDir == "" {
		return nil, errors.New("k8snode: Config.REST and Config.WorkDir are required")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("k8snode: a kubelet needs root (mounts, cgroups, network namespaces)")
	}
	if err := cfg.Binaries.resolve(); err != nil {
		return nil, fmt.Errorf("k8snode: missing tools:\n%w", err)
	}
	if cfg.PauseImage == "" {
		cfg.PauseImage = "hubgate/pause:latest"
	}
	suffix := randomHex(4)
	if cfg.Name == "" {
		cfg.Name = "hubgate-node-" + suffix
	}
	client, err := kubernetes.NewForConfig(cfg.REST)
	if err != nil {
		return nil, fmt.Errorf("k8snode: API client: %w", err)
	}
	n := &Node{
		cfg:        cfg,
		name:       cfg.Name,
		bridge:     "hgnode" + suffix,
		cgroupRoot: "/hubgate-node-" + suffix,
		dir:        filepath.Join(cfg.WorkDir, "node"),
		logDir:     filepath.Join(cfg.WorkDir, "logs"),
		client:     client,
	}
	n.sock = filepath.Join(n.dir, "containerd", "containerd.sock")
	if err := n.start(ctx); err != nil {
		n.Stop()
		return nil, fmt.Errorf("k8snode: start node %s: %w (logs in %s)", n.name, err, n.logDir)
	}
	return n, nil
}

// start does Start's work in order; Start cleans up after a failure.
func (n *Node) start(ctx context.Context) error {
	for _, d := range []string{n.dir, n.logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("make %s: %w", d, err)
		}
	}
	n.subnet = n.cfg.PodSubnet
	if n.subnet == "" {
		s, err := freeSubnet()
		if err != nil {
			return err
		}
		n.subnet = s
	}
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	if err := n.LoadImages(ctx, append([]string{n.cfg.PauseImage}, n.cfg.Images...)...); err != nil {
		return err
	}
	if err := n.startKubelet(); err != nil {
		return err
	}
	if err := n.startControlPlane(); err != nil {
		return err
	}
	if n.cfg.HostPathClass != "" {
		f, err := os.OpenFile(filepath.Join(n.logDir, "provisioner.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("open provisioner log: %w", err)
		}
		n.provisionLog = f
		if err := n.startProvisioner(ctx, n.cfg.HostPathClass); err != nil {
			return err
		}
	}
	return n.waitReady(ctx)
}

// Stop stops the daemons and removes what they left: pod sandboxes (their
// containers, network namespaces and CNI addresses), the shims, mounts
// under WorkDir, the bridge, the cgroups and the Node object. It returns
// what could not be cleaned. Calling it again returns the first result.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() { n.stopErr = n.stop() })
	return n.stopErr
}

// stop does Stop's work once.
func (n *Node) stop() error {
	var errs []error
	if n.stopProvisioner != nil {
		n.stopProvisioner()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := n.deleteProvisioned(ctx, n.cfg.HostPathClass); err != nil {
			errs = append(errs, err)
		}
		cancel()
		n.provisionLog.Close()
	}
	n.scheduler.stop(5 * time.Second)
	n.controllerManager.stop(5 * time.Second)
	n.kubelet.stop(10 * time.Second)
	if n.containerd != nil && n.containerd.exited() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if c, err := dialCRI(n.sock); err == nil {
			if err := c.removeAll(ctx); err != nil {
				errs = append(errs, err)
			}
			c.close()
		}
		cancel()
	}
	n.containerd.stop(10 * time.Second)
	if n.sock != "" {
		killShims(n.sock)
	}
	if err := removeLogLinks(n.dir); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(n.dir); err != nil {
		errs = append(errs, err)
	}
	if n.bridge != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := os.Stat("/sys/class/net/" + n.bridge); err == nil {
			if err := run(ctx, "ip", "link", "delete", n.bridge); err != nil {
				errs = append(errs, err)
			}
		}
		cancel()
	}
	if n.cgroupRoot != "" {
		if err := removeCgroupRoot(n.cgroupRoot); err != nil {
			errs = append(errs, err)
		}
	}
	if n.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := n.deleteNodeObject(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	if n.dir != "" {
		if err := os.RemoveAll(n.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", n.dir, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("k8snode: stop %s: %w", n.name, err)
	}
	return nil
}

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
