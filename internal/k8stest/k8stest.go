// Package k8stest runs a real Kubernetes control plane for tests: etcd and
// kube-apiserver (RBAC on, token authentication) on free loopback ports,
// and optionally kube-scheduler plus kwok with one fake Node, so pods get
// scheduled and become Running with an IP without a kubelet.
//
// The binaries come from tools/k8s/build.sh (`make k8s-tools`), found
// through $HUBGATE_K8S_BIN or the build cache; Start fails, saying how to
// build them, when they are missing. Start one ControlPlane per test
// package in TestMain and give each test its own namespace (Namespace):
// without a controller manager a namespace is never really deleted.
package k8stest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options says what to run besides etcd and kube-apiserver.
type Options struct {
	// Nodes runs kube-scheduler and kwok with one fake Node (NodeName), so
	// pods are scheduled and become Running with an IP, and a volume
	// binder that binds every pending claim to a new hostPath volume (what
	// kube-controller-manager would do).
	Nodes bool
	// NodeCPU and NodeMemory are the fake Node's allocatable resources.
	// Defaults "32" and "64Gi".
	NodeCPU, NodeMemory string
	// NodeLabels are extra labels of the fake Node.
	NodeLabels map[string]string
	// NodeExtended are extended resources of the fake Node, such as
	// {"nvidia.com/gpu": "4"}.
	NodeExtended map[string]string
	// Users are extra token-authenticated user names; see UserConfig.
	Users []string
	// KeepDir keeps the working directory (logs, etcd data) after Stop.
	KeepDir bool
}

// NodeName is the name of the fake Node.
const NodeName = "kwok-node-0"

// ControlPlane is a running etcd + kube-apiserver (+ scheduler + kwok).
type ControlPlane struct {
	// Admin is a rest.Config for a system:masters user.
	Admin *rest.Config
	// URL is the apiserver's https address.
	URL string
	// Dir is the working directory: certificates, logs, etcd data.
	Dir string

	ca     []byte
	tokens map[string]string // user -> token
	procs  []*proc           // in start order
	opts   Options
	client *kubernetes.Clientset
	nsSeq  atomic.Int64
	stopBg context.CancelFunc // background helpers (the volume binder)
}

// Start starts the control plane and waits until the apiserver is ready
// (and, with Options.Nodes, the fake Node is schedulable). Call Stop when
// done, even after an error.
func Start(opts Options) (cp *ControlPlane, err error) {
	names := []string{"etcd", "kube-apiserver"}
	if opts.Nodes {
		names = append(names, "kube-scheduler", "kwok")
	}
	bin, err := BinDir(names...)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hubgate-k8stest-")
	if err != nil {
		return nil, fmt.Errorf("k8stest: %w", err)
	}
	cp = &ControlPlane{Dir: dir, opts: opts, tokens: map[string]string{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, cp.Stop())
			cp = nil
		}
	}()
	if cp.ca, err = writeCerts(dir); err != nil {
		return cp, err
	}
	ports, err := freePorts(5)
	if err != nil {
		return cp, err
	}
	etcdClient, etcdPeer, apiPort, schedPort, kubeletPort := ports[0], ports[1], ports[2], ports[3], ports[4]

	if err := cp.startEtcd(bin, etcdClient, etcdPeer); err != nil {
		return cp, err
	}
	if err := cp.startAPIServer(bin, apiPort, etcdClient); err != nil {
		return cp, err
	}
	if opts.Nodes {
		if err := cp.startNodes(bin, schedPort, kubeletPort); err != nil {
			return cp, err
		}
		bg, cancel := context.WithCancel(context.Background())
		cp.stopBg = cancel
		cp.startBinder(bg)
	}
	return cp, nil
}

func (cp *ControlPlane) startEtcd(bin string, client, peer int) error {
	cu := "http://127.0.0.1:" + itoa(client)
	pu := "http://127.0.0.1:" + itoa(peer)
	p, err := startProc(cp.Dir, "etcd", filepath.Join(bin, "etcd"),
		"--name=k8stest", "--data-dir="+filepath.Join(cp.Dir, "etcd-data"),
		"--listen-client-urls="+cu, "--advertise-client-urls="+cu,
		"--listen-peer-urls="+pu, "--initial-advertise-peer-urls="+pu,
		"--initial-cluster=k8stest="+pu, "--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return err
	}
	cp.procs = append(cp.procs, p)
	return waitFor(30*time.Second, p, "etcd", func() error {
		resp, err := http.Get(cu + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health: %s", resp.Status)
		}
		return nil
	})
}

func (cp *ControlPlane) startAPIServer(bin string, port, etcdPort int) error {
	cp.URL = "https://127.0.0.1:" + itoa(port)
	cp.tokens["admin"] = randomToken()
	lines := []string{cp.tokens["admin"] + ",admin,admin-uid,system:masters"}
	for i, u := range cp.opts.Users {
		cp.tokens[u] = randomToken()
		lines = append(lines, fmt.Sprintf("%s,%s,user-%d", cp.tokens[u], u, i))
	}
	tokenFile := filepath.Join(cp.Dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("k8stest: write token file: %w", err)
	}
	p, err := startProc(cp.Dir, "kube-apiserver", filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:"+itoa(etcdPort),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+itoa(port), "--endpoint-reconciler-type=none",
		"--tls-cert-file="+filepath.Join(cp.Dir, "serving.crt"),
		"--tls-private-key-file="+filepath.Join(cp.Dir, "serving.key"),
		"--token-auth-file="+tokenFile, "--authorization-mode=RBAC",
		"--service-account-issuer="+cp.URL,
		"--service-account-key-file="+filepath.Join(cp.Dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(cp.Dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/24",
		// No token controller (so no default ServiceAccount) and no PVC
		// protection controller (so claims delete at once).
		"--disable-admission-plugins=ServiceAccount,StorageObjectInUseProtection",
		"--cert-dir="+filepath.Join(cp.Dir, "apiserver-certs"))
	if err != nil {
		return err
	}
	cp.procs = append(cp.procs, p)
	cp.Admin = cp.config(cp.tokens["admin"])
	cs, err := kubernetes.NewForConfig(cp.Admin)
	if err != nil {
		return fmt.Errorf("k8stest: admin client: %w", err)
	}
	cp.client = cs
	return waitFor(60*time.Second, p, "kube-apiserver", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%w (%s)", err, body)
		}
		return nil
	})
}

// config returns a rest.Config for the apiserver with a bearer token.
func (cp *ControlPlane) config(token string) *rest.Config {
	return &rest.Config{
		Host:            cp.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.ca},
		QPS:             -1, // no client-side rate limit in tests
		Timeout:         30 * time.Second,
	}
}

// Client is a clientset for the admin user.
func (cp *ControlPlane) Client() *kubernetes.Clientset { return cp.client }

// UserConfig returns a rest.Config authenticating as user, which must be in
// Options.Users. Such a user has no permissions until a test binds some.
func (cp *ControlPlane) UserConfig(user string) (*rest.Config, error) {
	tok, ok := cp.tokens[user]
	if !ok {
		return nil, fmt.Errorf("k8stest: user %q is not in Options.Users", user)
	}
	return cp.config(tok), nil
}

// ServiceAccountConfig creates the ServiceAccount ns/name if missing and
// returns a rest.Config authenticating as it (user
// system:serviceaccount:ns:name) with a token from the TokenRequest API,
// as a pod running under that ServiceAccount would.
func (cp *ControlPlane) ServiceAccountConfig(ctx context.Context, ns, name string) (*rest.Config, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cp.client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil &&
		!strings.Contains(err.Error(), "already exists") {
		return nil, fmt.Errorf("k8stest: create service account %s/%s: %w", ns, name, err)
	}
	exp := int64(3600)
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}
	tr, err := cp.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, req, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("k8stest: token for service account %s/%s: %w", ns, name, err)
	}
	return cp.config(tr.Status.Token), nil
}

// Namespace creates a fresh namespace for t, named after the test.
func (cp *ControlPlane) Namespace(t testing.TB) string {
	t.Helper()
	base := strings.ToLower(t.Name())
	var b strings.Builder
	for _, r := range base {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	name := b.String()
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("t%d-%s", cp.nsSeq.Add(1), name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cp.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

// Stop stops every process (SIGTERM, then a wait) in reverse start order
// and removes the working directory unless Options.KeepDir.
func (cp *ControlPlane) Stop() error {
	if cp == nil {
		return nil
	}
	var errs []error
	if cp.stopBg != nil {
		cp.stopBg()
	}
	for i := len(cp.procs) - 1; i >= 0; i-- {
		if err := cp.procs[i].stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	cp.procs = nil
	if !cp.opts.KeepDir && cp.Dir != "" {
		if err := os.RemoveAll(cp.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RSS returns the resident memory of each process, in bytes, by name.
func (cp *ControlPlane) RSS() map[string]int64 {
	out := map[string]int64{}
	for _, p := range cp.procs {
		out[p.name] = ProcessRSS(p.cmd.Process.Pid)
	}
	return out
}

// ProcessRSS returns the resident set size of process pid in bytes, or 0.
func ProcessRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb * 1024
		}
	}
	return 0
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
