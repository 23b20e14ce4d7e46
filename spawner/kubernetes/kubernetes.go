// Package kubernetes is the Kubernetes backend of hubgate's spawner: one Pod
// per user and server, one PersistentVolumeClaim per user mounted in every
// pod of that user, and one Secret per pod holding its environment.
//
// The cluster is the source of truth: every pod carries the labels and
// annotations below, so a restarted gateway rebuilds its view from one list.
// An informer on the deployment's pods (one label selector, one namespace)
// keeps a local cache; Get, List and WatchExits are served from it and make
// no API call once it has synced. Ensure, Stop, Logs and RemoveVolume call
// the API, each call bounded by Config.APITimeout.
//
// Secrets stay out of pod specs: all of Spec.Env goes into a Secret the pod
// reads with envFrom, owned by the pod (so the garbage collector deletes it
// with the pod) and also deleted by Stop.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hubgate/hubgate/spawner"
)

// Labels on hubgate's pods and claims. Values are limited to 63 characters
// of [A-Za-z0-9._-], so exact user names live in annotations and the user
// label holds UserLabel(user).
const (
	// LabelDeployment holds Config.Deployment; the informer selects on it.
	LabelDeployment = "hubgate.deployment"
	// LabelUser holds UserLabel(user), for pod affinity and selection.
	LabelUser = "hubgate.user"
	// LabelServer holds the server key (escaped like the user if needed).
	LabelServer = "hubgate.server"
	// LabelPort holds the app's port inside the pod.
	LabelPort = "hubgate.port"
	// LabelManagedBy is the recommended app.kubernetes.io/managed-by label.
	LabelManagedBy = "app.kubernetes.io/managed-by"
)

// Annotations on hubgate's pods (and the user annotation on claims).
const (
	// AnnotationUser holds the exact user name.
	AnnotationUser = "hubgate.user"
	// AnnotationServer holds the exact server key.
	AnnotationServer = "hubgate.server"
	// AnnotationImage holds the image reference as given in the Spec.
	AnnotationImage = "hubgate.image"
	// AnnotationNonce holds Spec.Nonce.
	AnnotationNonce = "hubgate.nonce"
	// AnnotationMetaPrefix prefixes the annotations that hold Spec.Meta.
	AnnotationMetaPrefix = "hubgate.meta."
)

// Access modes of Config.AccessMode.
const (
	ReadWriteOnce = "ReadWriteOnce"
	ReadWriteMany = "ReadWriteMany"
)

// Defaults for Config's zero values.
const (
	DefaultDeployment = "hubgate"
	DefaultVolumeSize = "10Gi"
	DefaultRunAsUser  = 1000
	DefaultAPITimeout = 30 * time.Second
	DefaultStopGrace  = 5 * time.Second
	DefaultQPS        = 50
	DefaultBurst      = 100
)

// Config configures the Kubernetes backend. In a Caddyfile it is the
// `kubernetes { ... }` block, one subdirective per field, named like the
// JSON keys.
type Config struct {
	// Namespace holds every pod, claim and secret of the deployment.
	// Default: the gateway's own namespace when it runs in a pod, else the
	// kubeconfig context's namespace, else "default".
	Namespace string `json:"namespace,omitempty"`

	// Kubeconfig is the path of a kubeconfig file to use. Empty means the
	// in-cluster configuration (the pod's ServiceAccount), falling back to
	// $KUBECONFIG and ~/.kube/config outside a cluster.
	Kubeconfig string `json:"kubeconfig,omitempty"`

	// Deployment starts every object name and is the value of the
	// hubgate.deployment label the informer selects on, so several
	// deployments can share a namespace. [a-z0-9][a-z0-9-]*, at most 40
	// bytes. Default "hubgate".
	Deployment string `json:"deployment,omitempty"`

	// StorageClass is the storage class of the users' volume claims. Empty
	// means the cluster's default class.
	StorageClass string `json:"storage_class,omitempty"`

	// VolumeSize is the requested size of each user's volume claim, as a
	// Kubernetes quantity ("10Gi"). Default "10Gi".
	VolumeSize string `json:"volume_size,omitempty"`

	// AccessMode is the claims' access mode: "ReadWriteOnce" (default) or
	// "ReadWriteMany". With ReadWriteOnce a user's second pod gets a
	// required pod affinity to the node of their first, since the volume
	// can attach to one node only.
	AccessMode string `json:"access_mode,omitempty"`

	// NodeSelector is the default node selector of every pod; an image's
	// own selector (Spec.NodeSelector) is merged over it.
	NodeSelector map[string]string `json:"node_selector,omitempty"`

	// ImagePullSecrets name Secrets in Namespace used to pull images.
	ImagePullSecrets []string `json:"image_pull_secrets,omitempty"`

	// RunAsUser is the uid (and gid, and fsGroup of the volume) user pods
	// run as: pods run as non-root, and images built FROM scratch name no
	// user. Default 1000.
	RunAsUser int64 `json:"run_as_user,omitempty"`

	// APITimeout bounds each API call (not a whole Ensure, which its
	// context bounds). Default 30s.
	APITimeout time.Duration `json:"api_timeout,omitempty"`

	// StopGrace is the pods' termination grace period, between SIGTERM and
	// SIGKILL. Default 5s.
	StopGrace time.Duration `json:"stop_grace,omitempty"`

	// REST, when set, is used instead of Kubeconfig and the in-cluster
	// configuration (for embedding and tests).
	REST *rest.Config `json:"-"`
}

// deploymentRE is the shape of Config.Deployment.
var deploymentRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// Spawner is the Kubernetes implementation of spawner.Spawner and
// spawner.ExitWatcher. It is safe for concurrent use, also by several
// gateway replicas sharing one namespace.
type Spawner struct {
	cfg  Config
	size resource.Quantity
	cs   kubernetes.Interface
	log  *zap.Logger

	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	lister   listersv1.PodNamespaceLister
	cancel   context.CancelFunc

	flightMu sync.Mutex
	flights  map[string]*flight // Ensure calls in progress, by pod name
}

// New returns a Spawner for cfg after filling in defaults, and starts its
// pod informer, which runs until ctx ends or Close. It makes no blocking
// call: connection problems surface on first use. A nil logger logs
// nothing.
func New(ctx context.Context, cfg Config, logger *zap.Logger) (*Spawner, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if cfg.Deployment == "" {
		cfg.Deployment = DefaultDeployment
	}
	if !deploymentRE.MatchString(cfg.Deployment) {
		return nil, fmt.Errorf("kubernetes spawner: deployment %q must match %s", cfg.Deployment, deploymentRE)
	}
	if cfg.VolumeSize == "" {
		cfg.VolumeSize = DefaultVolumeSize
	}
	size, err := resource.ParseQuantity(cfg.VolumeSize)
	if err != nil || size.Sign() <= 0 {
		return nil, fmt.Errorf("kubernetes spawner: volume_size %q is not a positive quantity such as \"10Gi\"", cfg.VolumeSize)
	}
	switch cfg.AccessMode {
	case "":
		cfg.AccessMode = ReadWriteOnce
	case ReadWriteOnce, ReadWriteMany:
	default:
		return nil, fmt.Errorf("kubernetes spawner: access_mode %q must be %s or %s", cfg.AccessMode, ReadWriteOnce, ReadWriteMany)
	}
	if cfg.RunAsUser == 0 {
		cfg.RunAsUser = DefaultRunAsUser
	}
	if cfg.RunAsUser < 0 {
		return nil, fmt.Errorf("kubernetes spawner: run_as_user %d must be a positive uid", cfg.RunAsUser)
	}
	if cfg.APITimeout <= 0 {
		cfg.APITimeout = DefaultAPITimeout
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	restCfg, ns, err := restConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes spawner: %w", err)
	}
	if cfg.Namespace == "" {
		cfg.Namespace = ns
	}
	if restCfg.QPS == 0 {
		// client-go's default (5/s, bursts of 10) would queue a burst of
		// starts behind each other.
		restCfg.QPS, restCfg.Burst = DefaultQPS, DefaultBurst
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes spawner: create client: %w", err)
	}

	s := &Spawner{cfg: cfg, size: size, cs: cs, log: logger, flights: map[string]*flight{}}
	s.factory = informers.NewSharedInformerFactoryWithOptions(cs, 0,
		informers.WithNamespace(cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = LabelDeployment + "=" + cfg.Deployment
		}))
	pods := s.factory.Core().V1().Pods()
	s.informer = pods.Informer()
	s.lister = pods.Lister().Pods(cfg.Namespace)
	ictx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.factory.Start(ictx.Done())
	return s, nil
}

// restConfig returns the client configuration and the default namespace.
func restConfig(cfg Config) (*rest.Config, string, error) {
	if cfg.REST != nil {
		return rest.CopyConfig(cfg.REST), "default", nil
	}
	if cfg.Kubeconfig == "" {
		if rc, err := rest.InClusterConfig(); err == nil {
			ns := "default"
			if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(b) > 0 {
				ns = strings.TrimSpace(string(b))
			}
			return rc, ns, nil
		} else if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, "", fmt.Errorf("in-cluster configuration: %w", err)
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if cfg.Kubeconfig != "" {
		rules.ExplicitPath = cfg.Kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("load kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	return rc, ns, nil
}

// Config returns the configuration in use, defaults filled in.
func (s *Spawner) Config() Config { return s.cfg }

// Close stops the informer.
func (s *Spawner) Close() error {
	s.cancel()
	s.factory.Shutdown()
	return nil
}

// apiCtx bounds one API call.
func (s *Spawner) apiCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.APITimeout)
}

// synced waits until the informer has listed the pods once.
func (s *Spawner) synced(ctx context.Context) error {
	if s.informer.HasSynced() {
		return nil
	}
	if !cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		return fmt.Errorf("%w: pod cache of namespace %s not synced: %w", spawner.ErrUnavailable, s.cfg.Namespace, context.Cause(ctx))
	}
	return nil
}

// apiErr marks errors that mean the API server could not be reached with
// spawner.ErrUnavailable.
func apiErr(err error) error {
	if err == nil || errors.Is(err, spawner.ErrUnavailable) {
		return err
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		switch status.Status().Code {
		case 0, 502, 503, 504:
			return fmt.Errorf("%w: %w", spawner.ErrUnavailable, err)
		}
		return err
	}
	var netErr interface{ Timeout() bool }
	if errors.As(err, &netErr) || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("%w: %w", spawner.ErrUnavailable, err)
	}
	return err
}

// podName is spawner.PodName in this deployment.
func (s *Spawner) podName(user, server string) string {
	return spawner.PodName(s.cfg.Deployment, user, server)
}

// claimName is spawner.ClaimName in this deployment.
func (s *Spawner) claimName(user string) string {
	return spawner.ClaimName(s.cfg.Deployment, user)
}

// validateKey checks the user and server arguments of Get, Stop and Logs.
func validateKey(user, server string) error {
	return errors.Join(spawner.ValidateUser(user), spawner.ValidateServer(server))
}

// Interface guards.
var (
	_ spawner.Spawner     = (*Spawner)(nil)
	_ spawner.ExitWatcher = (*Spawner)(nil)
)

// owned reports whether pod is this deployment's server for user/server.
func (s *Spawner) owned(pod *corev1.Pod, user, server string) bool {
	return pod.Labels[LabelDeployment] == s.cfg.Deployment &&
		pod.Annotations[AnnotationUser] == user && pod.Annotations[AnnotationServer] == server
}
