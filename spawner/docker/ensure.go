package docker

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/spawner"
)

// maxEnsureRounds bounds how often Ensure looks again at a container that
// changes under it (created, removed or started by another process).
const maxEnsureRounds = 20

// maxHostname is the longest hostname the kernel accepts.
const maxHostname = 63

// Ensure returns the user's running server, creating the user's volume, the
// network (on first use) and the container, and starting it, as needed. It
// does not wait for the app to answer.
//
// It converges by looking at the container of the fixed name and acting on
// its state: none, create it (a name conflict means another process just
// did, so look again); "created", start it (or, if its last start failed,
// remove it and create it anew); "paused", unpause it; "exited"
// or "dead", remove it (by ID) and create it anew, with the volume kept and
// the current spec; "removing" or "restarting", wait and look again. So
// concurrent calls, in one process or many, end with one container.
//
// An existing running container is returned as it is, even if spec differs
// (another image, env or nonce): the Instance's Nonce is the one to derive
// its secret from. A container that exits right after start is left in
// place for Logs, and Ensure reports it; the next Ensure recreates it.
func (s *Spawner) ensureWrapped(ctx context.Context, spec spawner.Spec) (spawner.Instance, error) {
	inst, err := s.ensure(ctx, spec)
	if err != nil {
		return spawner.Instance{}, fmt.Errorf("ensure server for %s/%s: %w", spec.User, spec.Server, err)
	}
	return inst, nil
}

// ensure is ensureWrapped without the error context.
func (s *Spawner) ensure(ctx context.Context, spec spawner.Spec) (spawner.Instance, error) {
	if err := spec.Validate(); err != nil {
		return spawner.Instance{}, err
	}
	name := s.containerName(spec.User, spec.Server)
	log := s.log.With(zap.String("user", spec.User), zap.String("server", spec.Server))

	for round := 0; round < maxEnsureRounds; round++ {
		if round > 0 {
			if err := spawner.Sleep(ctx, spawner.Backoff(round), "the container to settle"); err != nil {
				return spawner.Instance{}, err
			}
		}
		c, err := s.inspect(ctx, name, spec.User, spec.Server)
		if isNotFound(err) {
			inst, again, err := s.create(ctx, spec, name, log)
			if again {
				continue
			}
			return inst, err
		}
		if err != nil {
			return spawner.Instance{}, err
		}

		switch c.State.Status {
		case container.StateRunning:
			return s.checkRunning(c)
		case container.StateCreated:
			if c.State.Error != "" {
				// An earlier start failed (bad command, say): start afresh
				// from the current spec.
				log.Info("removing container whose start failed to create it anew",
					zap.String("container_id", c.ID), zap.String("start_error", c.State.Error))
				if err := s.remove(ctx, c.ID); err != nil {
					return spawner.Instance{}, err
				}
				continue
			}
			log.Debug("starting created container", zap.String("container_id", c.ID))
			inst, again, err := s.start(ctx, c.ID, spec, log)
			if again {
				continue
			}
			return inst, err
		case container.StatePaused:
			uctx, cancel := s.apiCtx(ctx)
			err := s.cli.ContainerUnpause(uctx, c.ID)
			cancel()
			if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
				return spawner.Instance{}, fmt.Errorf("unpause container %s: %w", c.ID, err)
			}
		case container.StateExited, container.StateDead:
			log.Info("removing stopped container to create it anew",
				zap.String("container_id", c.ID), zap.String("status", c.State.Status),
				zap.Int("exit_code", c.State.ExitCode))
			if err := s.remove(ctx, c.ID); err != nil {
				return spawner.Instance{}, err
			}
		default:
			// Removing or restarting: look again shortly.
			log.Debug("container is changing state", zap.String("container_id", c.ID),
				zap.String("status", c.State.Status))
		}
	}
	return spawner.Instance{}, fmt.Errorf("container %s kept changing state; gave up after %d rounds", name, maxEnsureRounds)
}

// create creates the volume, the network if needed, and the container, then
// starts it. again reports that the caller should look at the container
// anew (someone else created it, or it vanished).
func (s *Spawner) create(ctx context.Context, spec spawner.Spec, name string, log *zap.Logger) (inst spawner.Instance, again bool, err error) {
	spec.Report(spawner.StepVolume)
	vol, err := s.ensureVolume(ctx, spec.User)
	if err != nil {
		return inst, false, err
	}
	if err := s.checkImage(ctx, spec.Image); err != nil {
		return inst, false, err
	}
	if err := s.ensureNetwork(ctx, spec.Image); err != nil {
		return inst, false, err
	}

	cfg, hostCfg, netCfg := s.containerConfig(spec, vol)
	cctx, cancel := s.apiCtx(ctx)
	spec.Report(spawner.StepCreate)
	resp, err := s.cli.ContainerCreate(cctx, cfg, hostCfg, netCfg, nil, name)
	cancel()
	switch {
	case cerrdefs.IsConflict(err):
		log.Debug("container created concurrently by someone else", zap.String("container", name))
		return inst, true, nil
	case cerrdefs.IsNotFound(err):
		// The network (or image) vanished since we checked: check again.
		log.Warn("create container: something vanished; retrying", zap.Error(err))
		s.forgetNetwork()
		return inst, true, nil
	case err != nil:
		return inst, false, fmt.Errorf("create container %s: %w", name, err)
	}
	for _, w := range resp.Warnings {
		log.Warn("engine warning on create", zap.String("container_id", resp.ID), zap.String("warning", w))
	}
	log.Info("created container", zap.String("container_id", resp.ID),
		zap.String("container", name), zap.String("image", spec.Image), zap.String("volume", vol))
	return s.start(ctx, resp.ID, spec, log)
}

// checkImage wraps spawner.ErrImageMissing when image is not on the engine.
func (s *Spawner) checkImage(ctx context.Context, image string) error {
	ictx, cancel := s.apiCtx(ctx)
	defer cancel()
	_, err := s.cli.ImageInspect(ictx, image)
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %s", spawner.ErrImageMissing, image)
	}
	if err != nil {
		return fmt.Errorf("inspect image %s: %w", image, err)
	}
	return nil
}

// start starts container id (a no-op if someone else just did) and returns
// it as running. again reports that it vanished meanwhile.
func (s *Spawner) start(ctx context.Context, id string, spec spawner.Spec, log *zap.Logger) (inst spawner.Instance, again bool, err error) {
	sctx, cancel := s.apiCtx(ctx)
	spec.Report(spawner.StepStart)
	err = s.cli.ContainerStart(sctx, id, container.StartOptions{})
	cancel()
	if cerrdefs.IsNotFound(err) || err != nil && strings.Contains(err.Error(), "marked for removal") {
		return inst, true, nil
	}
	if err != nil {
		return inst, false, fmt.Errorf("start container %s: %w", id, err)
	}
	c, err := s.inspect(ctx, id, spec.User, spec.Server)
	if isNotFound(err) {
		return inst, true, nil
	}
	if err != nil {
		return inst, false, err
	}
	if !c.State.Running {
		return inst, false, fmt.Errorf("container %s is %s right after start (exit code %d); see its logs",
			id, c.State.Status, c.State.ExitCode)
	}
	log.Info("started container", zap.String("container_id", id))
	inst, err = s.checkRunning(c)
	return inst, false, err
}

// checkRunning returns running container c as an Instance, or an error if
// it has no address on our network.
func (s *Spawner) checkRunning(c container.InspectResponse) (spawner.Instance, error) {
	inst := s.fromInspect(c)
	if inst.Addr == "" {
		return inst, fmt.Errorf("container %s runs but has no address on network %s (or no %s label)",
			c.ID, s.cfg.Network, LabelPort)
	}
	return inst, nil
}

// containerConfig builds the engine's create request for spec.
func (s *Spawner) containerConfig(spec spawner.Spec, vol string) (*container.Config, *container.HostConfig, *network.NetworkingConfig) {
	env := make([]string, 0, len(spec.Env)+1)
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	if _, ok := spec.Env["HOME"]; !ok {
		env = append(env, "HOME="+spec.HomeMount)
	}
	sort.Strings(env)

	hostname := spawner.EscapeName(spec.User)
	if len(hostname) > maxHostname {
		hostname = hostname[:maxHostname]
	}

	cfg := &container.Config{
		Hostname: hostname,
		Image:    spec.Image,
		Env:      env,
		Labels: map[string]string{
			LabelDeployment: s.cfg.Prefix,
			LabelUser:       spec.User,
			LabelServer:     spec.Server,
			LabelImage:      spec.Image,
			LabelNonce:      spec.Nonce,
			LabelPort:       strconv.Itoa(spec.Port),
			LabelCreated:    time.Now().UTC().Format(time.RFC3339),
		},
	}
	for k, v := range spec.Meta {
		cfg.Labels[LabelMetaPrefix+k] = v
	}
	if len(spec.Cmd) > 0 {
		cfg.Cmd = append([]string(nil), spec.Cmd...)
	}

	hostCfg := &container.HostConfig{
		NetworkMode:   container.NetworkMode(s.networkRef()),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Mounts: []mount.Mount{{
			Type:   mount.TypeVolume,
			Source: vol,
			Target: spec.HomeMount,
		}},
		Resources: container.Resources{
			Memory:   spec.Limits.MemoryBytes,
			NanoCPUs: spec.Limits.NanoCPUs,
		},
	}
	harden(hostCfg, spec)
	if spec.Limits.Pids > 0 {
		pids := spec.Limits.Pids
		hostCfg.Resources.PidsLimit = &pids
	}

	netCfg := &network.NetworkingConfig{
		EndpointsConfig: map[string]*network.EndpointSettings{s.networkRef(): {}},
	}
	return cfg, hostCfg, netCfg
}
