package docker

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"go.uber.org/zap"
)

// Stop stops the user's server, giving it Config.StopTimeout between
// SIGTERM and SIGKILL, and removes its container (with its anonymous
// volumes). The user's named volume stays. It wraps spawner.ErrNotFound when
// there is no such container; a container removed concurrently by someone
// else counts as stopped.
func (s *Spawner) stop(ctx context.Context, user, server string) error {
	if err := validateKey(user, server); err != nil {
		return fmt.Errorf("stop server for %s/%s: %w", user, server, err)
	}
	c, err := s.inspect(ctx, s.containerName(user, server), user, server)
	if err != nil {
		return fmt.Errorf("stop server for %s/%s: %w", user, server, err)
	}
	if err := s.stopAndRemove(ctx, c.ID); err != nil {
		return fmt.Errorf("stop server for %s/%s: %w", user, server, err)
	}
	s.log.Info("stopped and removed server",
		zap.String("user", user), zap.String("server", server), zap.String("container_id", c.ID))
	return nil
}

// stopAndRemove stops container id, then removes it. Always by ID, never by
// name: the name may already belong to a newer container.
func (s *Spawner) stopAndRemove(ctx context.Context, id string) error {
	secs := int(s.cfg.StopTimeout.Seconds())
	sctx, cancel := context.WithTimeout(ctx, s.cfg.APITimeout+s.cfg.StopTimeout)
	err := s.cli.ContainerStop(sctx, id, container.StopOptions{Timeout: &secs})
	cancel()
	if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	return s.remove(ctx, id)
}

// remove force-removes container id with its anonymous volumes. A container
// already gone or being removed by someone else is not an error.
func (s *Spawner) remove(ctx context.Context, id string) error {
	rctx, cancel := s.apiCtx(ctx)
	defer cancel()
	err := s.cli.ContainerRemove(rctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err == nil || cerrdefs.IsNotFound(err) || cerrdefs.IsConflict(err) {
		return nil
	}
	return fmt.Errorf("remove container %s: %w", id, err)
}
