package k8stest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// startNodes starts kube-scheduler and kwok and creates the fake Node.
func (cp *ControlPlane) startNodes(bin string, schedPort, kubeletPort int) error {
	kubeconfig := filepath.Join(cp.Dir, "admin.kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(cp.kubeconfig(cp.tokens["admin"])), 0o600); err != nil {
		return fmt.Errorf("k8stest: write kubeconfig: %w", err)
	}
	sched, err := startProc(cp.Dir, "kube-scheduler", filepath.Join(bin, "kube-scheduler"),
		"--kubeconfig="+kubeconfig, "--authentication-kubeconfig="+kubeconfig,
		"--authorization-kubeconfig="+kubeconfig, "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+itoa(schedPort))
	if err != nil {
		return err
	}
	cp.procs = append(cp.procs, sched)

	stages, err := kwokStages(bin)
	if err != nil {
		return err
	}
	args := []string{"--kubeconfig=" + kubeconfig, "--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		// The node's kubelet address is a closed loopback port, so what the
		// apiserver proxies to a kubelet (logs, exec) fails at once.
		"--cidr=10.244.0.0/16", "--node-ip=127.0.0.1", "--node-port=" + itoa(kubeletPort)}
	for _, s := range stages {
		args = append(args, "--config="+s)
	}
	kwok, err := startProc(cp.Dir, "kwok", filepath.Join(bin, "kwok"), args...)
	if err != nil {
		return err
	}
	cp.procs = append(cp.procs, kwok)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cp.createNode(ctx); err != nil {
		return err
	}
	return waitFor(60*time.Second, kwok, "fake node "+NodeName, func() error {
		if sched.exited() {
			return sched.exitError()
		}
		n, err := cp.client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(n.Spec.Taints) > 0 {
			// The not-ready taint added on creation: take it off, as the
			// node lifecycle controller would once the node is Ready.
			n.Spec.Taints = nil
			if _, err := cp.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
				return err
			}
			return fmt.Errorf("removed taints; checking again")
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node not Ready yet")
	})
}

// createNode creates the fake Node that kwok manages.
func (cp *ControlPlane) createNode(ctx context.Context) error {
	cpu, mem := cp.opts.NodeCPU, cp.opts.NodeMemory
	if cpu == "" {
		cpu = "32"
	}
	if mem == "" {
		mem = "64Gi"
	}
	alloc := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(cpu),
		corev1.ResourceMemory: resource.MustParse(mem),
		corev1.ResourcePods:   resource.MustParse("5000"),
	}
	for name, v := range cp.opts.NodeExtended {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return fmt.Errorf("k8stest: node resource %s=%s: %w", name, v, err)
		}
		alloc[corev1.ResourceName(name)] = q
	}
	labels := map[string]string{
		"kubernetes.io/hostname": NodeName,
		"kubernetes.io/os":       "linux",
		"type":                   "kwok",
	}
	for k, v := range cp.opts.NodeLabels {
		labels[k] = v
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        NodeName,
			Labels:      labels,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
		},
		Status: corev1.NodeStatus{Allocatable: alloc, Capacity: alloc},
	}
	if _, err := cp.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("k8stest: create node %s: %w", NodeName, err)
	}
	return nil
}

// kubeconfig renders a kubeconfig for the apiserver with a bearer token.
func (cp *ControlPlane) kubeconfig(token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: k8stest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: u
  user:
    token: %s
contexts:
- name: k8stest
  context: {cluster: k8stest, user: u}
current-context: k8stest
`, cp.URL, filepath.Join(cp.Dir, "serving.crt"), token)
}

// WriteKubeconfig writes a kubeconfig for cfg's bearer token to a file in
// the working directory and returns its path.
func (cp *ControlPlane) WriteKubeconfig(name, token string) (string, error) {
	p := filepath.Join(cp.Dir, name+".kubeconfig")
	if err := os.WriteFile(p, []byte(cp.kubeconfig(token)), 0o600); err != nil {
		return "", fmt.Errorf("k8stest: write kubeconfig: %w", err)
	}
	return p, nil
}
