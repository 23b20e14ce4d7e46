// Package spawner defines how hubgate starts, finds and stops per-user
// servers, independently of the container engine behind it. It knows nothing
// of HTTP: callers pass a context and get back an Instance whose Addr they may
// proxy to.
//
// The engine is the source of truth: every container and volume carries
// labels naming its deployment, user and server, so a restarted gateway
// rebuilds its view with List. Backends live in sub-packages (spawner/docker).
package spawner

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/hubgate/hubgate/policies/username"
)

// ErrNotFound is returned (possibly wrapped) when the requested user's server
// or volume does not exist.
var ErrNotFound = errors.New("no such server")

// ErrImageMissing is returned, wrapped with the image reference, when a
// server's image is not present on the engine. Images are never pulled.
var ErrImageMissing = errors.New("image not found")

// ErrUnavailable is returned, wrapped, when the container engine cannot be
// reached at all (its socket refuses connections, or it is not running).
var ErrUnavailable = errors.New("container engine unreachable")

// Limits are the resource limits of one server's container. A zero field
// means the engine's default (no limit).
type Limits struct {
	// MemoryBytes is the memory limit in bytes.
	MemoryBytes int64
	// NanoCPUs is the CPU quota in units of 1e-9 CPUs (2e9 = two CPUs).
	NanoCPUs int64
	// Pids is the maximum number of processes.
	Pids int64
}

// Spec describes the server to run for one user.
type Spec struct {
	// User is the canonical user name (see username.Canonical), already
	// validated by the caller.
	User string
	// Server is the server key, made of [a-z0-9-].
	Server string
	// Image is the image reference; it must already be on the engine.
	Image string
	// Port is the port the app listens on inside the container.
	Port int
	// Cmd optionally overrides the image's command (its CMD; for an image
	// with an ENTRYPOINT these are the entrypoint's arguments).
	Cmd []string
	// Env is set in the container. The caller puts HUBGATE_TOKEN,
	// HUBGATE_BASE_URL and the rest of the container contract here. Values
	// are secrets: backends never log them.
	Env map[string]string
	// HomeMount is the absolute path where the user's volume is mounted.
	// HOME defaults to it unless Env sets HOME.
	HomeMount string
	// Limits are the container's resource limits.
	Limits Limits
	// CapAdd are the Linux capabilities, named without "CAP_" in upper case
	// (such as "NET_BIND_SERVICE"), given back to the container. Backends
	// drop every other capability and set no-new-privileges.
	CapAdd []string
	// ReadOnlyRootFS mounts the image's root filesystem read-only, with a
	// fresh tmpfs at /tmp; the home volume stays writable.
	ReadOnlyRootFS bool
	// Nonce is a random value stored in a label; the caller derives the
	// container's secret from it. When Ensure finds an existing container,
	// the returned Instance carries that container's nonce, which may differ
	// from this one.
	Nonce string
	// Progress, if set, is told each step of Ensure as it begins
	// (StepVolume, StepCreate, StepStart), for the progress page. It must
	// not block.
	Progress func(step string) `json:"-"`
	// Meta is stored with the container (as labels prefixed "hubgate.meta.")
	// and returned in Instance.Meta: the gateway keeps the server's idle
	// timeout, maximum age and limits there, so the engine stays the source
	// of truth after a gateway restart. Keys are [a-z0-9_]; values are not
	// secret.
	Meta map[string]string

	// The fields below are optional scheduling hints for backends that run
	// on a cluster (spawner/kubernetes). The Docker backend ignores them: it
	// never pulls, has one node, and no extended resources.

	// PullPolicy says when the cluster pulls the image: PullAlways,
	// PullIfMissing or PullNever. Empty means the backend's default
	// (PullIfMissing on Kubernetes).
	PullPolicy string
	// NodeSelector restricts the server to nodes with all these labels
	// (merged over the backend's default selector; these win).
	NodeSelector map[string]string
	// Tolerations let the server run on nodes with matching taints (such
	// as GPU nodes).
	Tolerations []Toleration
	// ExtendedResources are countable node resources the server needs, by
	// resource name, such as {"nvidia.com/gpu": 1}. They are requested and
	// limited alike.
	ExtendedResources map[string]int64
}

// Image pull policies of Spec.PullPolicy.
const (
	PullAlways    = "always"
	PullIfMissing = "if_missing"
	PullNever     = "never"
)

// Toleration lets a server run on nodes with a matching taint, as in
// Kubernetes: an empty Key with Operator "exists" tolerates every taint; an
// empty Effect matches every effect.
type Toleration struct {
	// Key is the taint key, such as "nvidia.com/gpu".
	Key string
	// Operator is "equal" (the default: Value must match) or "exists" (any
	// value; Value must be empty).
	Operator string
	// Value is the taint value, for Operator "equal".
	Value string
	// Effect is "NoSchedule", "PreferNoSchedule", "NoExecute" or empty (all).
	Effect string
}

// Validate reports whether t is well-formed.
func (t Toleration) Validate() error {
	switch t.Operator {
	case "", "equal":
		if t.Key == "" {
			return errors.New("toleration with operator \"equal\" needs a key")
		}
	case "exists":
		if t.Value != "" {
			return fmt.Errorf("toleration of %q with operator \"exists\" must not have a value", t.Key)
		}
	default:
		return fmt.Errorf("toleration of %q: operator %q must be \"equal\" or \"exists\"", t.Key, t.Operator)
	}
	switch t.Effect {
	case "", "NoSchedule", "PreferNoSchedule", "NoExecute":
	default:
		return fmt.Errorf("toleration of %q: effect %q must be NoSchedule, PreferNoSchedule or NoExecute", t.Key, t.Effect)
	}
	return nil
}

// Validate reports whether s is complete and well-formed. Backends call it
// at the start of Ensure.
func (s Spec) Validate() error {
	if err := ValidateUser(s.User); err != nil {
		return err
	}
	if err := ValidateServer(s.Server); err != nil {
		return err
	}
	if s.Image == "" {
		return errors.New("empty image reference")
	}
	if s.Port < 1 || s.Port > 65535 {
		return fmt.Errorf("port %d out of range", s.Port)
	}
	if !path.IsAbs(s.HomeMount) || path.Clean(s.HomeMount) == "/" || strings.ContainsAny(s.HomeMount, ":,") {
		return fmt.Errorf("home mount %q must be an absolute path below /, without ':' or ','", s.HomeMount)
	}
	for k := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("invalid environment variable name %q", k)
		}
	}
	if s.Limits.MemoryBytes < 0 || s.Limits.NanoCPUs < 0 || s.Limits.Pids < 0 {
		return errors.New("negative resource limit")
	}
	for _, c := range s.CapAdd {
		if !capRE.MatchString(c) || c == "ALL" {
			return fmt.Errorf("invalid capability %q: name one capability, such as NET_BIND_SERVICE", c)
		}
	}
	switch s.PullPolicy {
	case "", PullAlways, PullIfMissing, PullNever:
	default:
		return fmt.Errorf("pull policy %q must be %q, %q or %q", s.PullPolicy, PullAlways, PullIfMissing, PullNever)
	}
	for _, t := range s.Tolerations {
		if err := t.Validate(); err != nil {
			return err
		}
	}
	for name, n := range s.ExtendedResources {
		if name == "" || n < 0 {
			return fmt.Errorf("invalid extended resource %q: %d", name, n)
		}
	}
	return nil
}

// capRE is the shape of a capability name in Spec.CapAdd.
var capRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// ValidateUser reports whether user is a user name in canonical form
// (username.Check): Ensure creates containers for no other names.
func ValidateUser(user string) error {
	return username.Check(user)
}

// ValidateServer reports whether server is a server key: one or more of
// [a-z0-9-].
func ValidateServer(server string) error {
	if server == "" {
		return errors.New("empty server key")
	}
	for i := 0; i < len(server); i++ {
		c := server[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("server key %q must match [a-z0-9-]+", server)
		}
	}
	return nil
}

// The steps of Ensure reported to Spec.Progress.
const (
	StepVolume = "creating the home volume"
	StepCreate = "creating the container"
	StepStart  = "starting the container"
)

// Report tells s.Progress that step begins, if anyone listens.
func (s Spec) Report(step string) {
	if s.Progress != nil {
		s.Progress(step)
	}
}

// Instance is one user's server as the engine reports it.
type Instance struct {
	// ID is the engine's container ID.
	ID string
	// Name is the container name (see ContainerName).
	Name string
	// User is the user name, from the container's labels.
	User string
	// Server is the server key, from the container's labels.
	Server string
	// Image is the image reference the container was created from, as given
	// in its Spec.
	Image string
	// Nonce is the container's nonce label; derive its secret from this.
	Nonce string
	// Addr is "ip:port", reachable from the gateway: the container's IP on
	// the deployment's network and the app port. It is empty when the
	// container is not running (the engine releases the IP then).
	Addr string
	// Created is when the container was created.
	Created time.Time
	// Started is when the container last started; zero if it never did, or
	// when the backend cannot tell cheaply (see the backend's List).
	Started time.Time
	// Running reports whether the container is running.
	Running bool
	// Status is the engine's state word: "running", "exited", "created"...
	// (on a cluster, a pending pod's reason: "pending: Unschedulable: ...").
	Status string
	// Node is the host the server runs on where the engine has several
	// (a Kubernetes node); empty on Docker.
	Node string
	// Meta is what Spec.Meta stored.
	Meta map[string]string
	// ImageID is the engine's identity of the image the container runs:
	// Docker's image ID ("sha256:..."), a pod's imageID (usually a
	// repository digest) once the kubelet reports it; empty when unknown.
	ImageID string
}

// Spawner starts, finds and stops per-user servers. Implementations are safe
// for concurrent use, also by several processes sharing one engine.
type Spawner interface {
	// Ensure returns the user's running server, creating the volume (first)
	// and the container and starting it when needed. It does not wait for
	// the app to answer. If a container of that name exists but is not
	// running, it is started (if it exited it is removed and created anew,
	// keeping the volume). Concurrent calls for the same user+server across
	// processes yield one container: the container name is fixed, and a name
	// conflict on create means someone else created it, so that one is used.
	Ensure(ctx context.Context, spec Spec) (Instance, error)

	// Get returns the user's server, running or not; ErrNotFound when absent.
	Get(ctx context.Context, user, server string) (Instance, error)

	// List returns all servers of this deployment, running or not, from
	// labels, in one engine API call.
	List(ctx context.Context) ([]Instance, error)

	// Stop stops the server (with a short grace period) and removes its
	// container; the volume stays. ErrNotFound when absent.
	Stop(ctx context.Context, user, server string) error

	// Logs returns the last lines of the server's output (stdout and
	// stderr interleaved), for error reports. ErrNotFound when absent.
	Logs(ctx context.Context, user, server string, lines int) (string, error)

	// RemoveVolume removes the user's volume, for tests and admins. It
	// refuses while a container uses it; ErrNotFound when absent.
	RemoveVolume(ctx context.Context, user string) error
}

// ExitWatcher is implemented by spawners that can report, as it happens,
// that a server's container stopped (it died, was stopped or removed), so
// the gateway drops its route at once instead of on a failed request.
type ExitWatcher interface {
	// WatchExits calls fn for each server that stops, until ctx ends or
	// the event stream fails; it returns the stream's error.
	WatchExits(ctx context.Context, fn func(user, server, containerID string)) error
}
