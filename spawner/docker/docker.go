// Package docker is the Docker Engine backend of hubgate's spawner: one
// container per user and server, one named volume per user, all on one bridge
// network of the deployment's own, never published on host ports.
//
// Every container and volume carries the labels below, so the engine is the
// source of truth and a restarted gateway finds its servers again with List.
// Images are never pulled: a missing image is reported as
// spawner.ErrImageMissing.
package docker

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/docker/docker/client"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/spawner"
)

// Labels set on hubgate's containers, volumes and network.
const (
	// LabelDeployment holds Config.Prefix, on containers, volumes and the network.
	LabelDeployment = "hubgate.deployment"
	// LabelUser holds the user name, on containers and volumes.
	LabelUser = "hubgate.user"
	// LabelServer holds the server key.
	LabelServer = "hubgate.server"
	// LabelImage holds the image reference the container was created from.
	LabelImage = "hubgate.image"
	// LabelNonce holds Spec.Nonce, from which the caller derives the secret.
	LabelNonce = "hubgate.nonce"
	// LabelPort holds the app's port inside the container.
	LabelPort = "hubgate.port"
	// LabelCreated holds the creation time, RFC 3339.
	LabelCreated = "hubgate.created"
	// LabelMetaPrefix prefixes the labels that hold Spec.Meta.
	LabelMetaPrefix = "hubgate.meta."
)

// Defaults for Config's zero values.
const (
	DefaultNetwork     = "hubgate"
	DefaultPrefix      = "hubgate"
	DefaultAPITimeout  = 30 * time.Second
	DefaultStopTimeout = 5 * time.Second
)

// Config configures the Docker backend.
type Config struct {
	// Host is the engine's address in DOCKER_HOST form
	// ("unix:///var/run/docker.sock", "tcp://host:2376"). Empty means the
	// environment's DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, or
	// the local socket.
	Host string

	// Network is the name of the bridge network the containers join; it is
	// created on first use if missing, labelled with the deployment. An
	// existing network of that name is used as it is. Default "hubgate".
	Network string

	// Isolate, when the network is created by hubgate, disables
	// inter-container traffic on it (bridge option
	// com.docker.network.bridge.enable_icc=false) so user containers cannot
	// reach each other; the host, and so the gateway, still reaches them.
	Isolate bool

	// Internal, when the network is created by hubgate, makes it a Docker
	// internal network: no route out of it, only its own subnet and the
	// host's address on it (where the egress proxy listens). An existing
	// network that is not internal is refused rather than used, so that
	// containers never start with a way out the admin did not intend.
	Internal bool

	// Prefix starts every container and volume name and is the value of the
	// hubgate.deployment label, so several deployments (or test runs) can
	// share an engine. It must match [a-z0-9][a-z0-9-]* and be at most 40
	// bytes. Default "hubgate".
	Prefix string

	// APITimeout bounds each engine API call (not a whole Ensure, which is
	// bounded by its context). Default 30s.
	APITimeout time.Duration

	// StopTimeout is the grace period between SIGTERM and SIGKILL when
	// stopping a server. Default 5s.
	StopTimeout time.Duration
}

// prefixRE is the shape of Config.Prefix.
var prefixRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// networkRE is the shape Docker accepts for network names.
var networkRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Spawner is the Docker implementation of spawner.Spawner. It is safe for
// concurrent use, also by several processes sharing one engine.
type Spawner struct {
	cfg Config
	cli *client.Client
	log *zap.Logger

	netMu    sync.Mutex // serialises network creation
	netReady bool       // the network is known to exist
	netID    string     // its ID, once known

	lockStale time.Duration // networkLockStale; shorter in tests
}

// New returns a Spawner for cfg after filling in defaults. It makes no
// engine call: connection problems surface on first use. A nil logger logs
// nothing.
func New(cfg Config, logger *zap.Logger) (*Spawner, error) {
	if cfg.Network == "" {
		cfg.Network = DefaultNetwork
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.APITimeout <= 0 {
		cfg.APITimeout = DefaultAPITimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if !prefixRE.MatchString(cfg.Prefix) {
		return nil, fmt.Errorf("docker spawner: prefix %q must match %s", cfg.Prefix, prefixRE)
	}
	if !networkRE.MatchString(cfg.Network) {
		return nil, fmt.Errorf("docker spawner: invalid network name %q", cfg.Network)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker spawner: create client: %w", err)
	}
	return &Spawner{cfg: cfg, cli: cli, log: logger, lockStale: networkLockStale}, nil
}

// Config returns the configuration in use, defaults filled in.
func (s *Spawner) Config() Config { return s.cfg }

// Close releases the engine client's connections.
func (s *Spawner) Close() error {
	return s.cli.Close()
}

// engineErr marks errors that mean the engine could not be reached at all
// with spawner.ErrUnavailable, so callers can tell users to come back
// later instead of blaming their server.
func engineErr(err error) error {
	if err != nil && client.IsErrConnectionFailed(err) && !errors.Is(err, spawner.ErrUnavailable) {
		return fmt.Errorf("%w: %w", spawner.ErrUnavailable, err)
	}
	return err
}

// apiCtx bounds one engine API call.
func (s *Spawner) apiCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.APITimeout)
}

// containerName is spawner.ContainerName in this deployment.
func (s *Spawner) containerName(user, server string) string {
	return spawner.ContainerName(s.cfg.Prefix, user, server)
}

// volumeName is spawner.VolumeName in this deployment.
func (s *Spawner) volumeName(user string) string {
	return spawner.VolumeName(s.cfg.Prefix, user)
}

// validateKey checks the user and server arguments of Get, Stop and Logs.
// It is laxer than Ensure about the user (any non-empty UTF-8 will do), so
// that servers of names an older release accepted can still be found and
// stopped.
func validateKey(user, server string) error {
	var uerr error
	if user == "" || !utf8.ValidString(user) {
		uerr = fmt.Errorf("invalid user name %q", user)
	}
	return errors.Join(uerr, spawner.ValidateServer(server))
}

// Interface guard.
var _ spawner.Spawner = (*Spawner)(nil)

// Ensure implements spawner.Spawner; see ensure.go.
func (s *Spawner) Ensure(ctx context.Context, spec spawner.Spec) (spawner.Instance, error) {
	inst, err := s.ensureWrapped(ctx, spec)
	return inst, engineErr(err)
}

// Get implements spawner.Spawner; see get.go.
func (s *Spawner) Get(ctx context.Context, user, server string) (spawner.Instance, error) {
	inst, err := s.get(ctx, user, server)
	return inst, engineErr(err)
}

// List implements spawner.Spawner; see list.go.
func (s *Spawner) List(ctx context.Context) ([]spawner.Instance, error) {
	insts, err := s.list(ctx)
	return insts, engineErr(err)
}

// Stop implements spawner.Spawner; see stop.go.
func (s *Spawner) Stop(ctx context.Context, user, server string) error {
	return engineErr(s.stop(ctx, user, server))
}
