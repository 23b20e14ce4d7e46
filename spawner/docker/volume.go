package docker

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/spawner"
)

// ensureVolume creates the user's home volume, labelled, unless it exists
// (the engine returns an existing volume of that name unchanged).
func (s *Spawner) ensureVolume(ctx context.Context, user string) (string, error) {
	name := s.volumeName(user)
	vctx, cancel := s.apiCtx(ctx)
	defer cancel()
	_, err := s.cli.VolumeCreate(vctx, volume.CreateOptions{
		Name:   name,
		Driver: "local",
		Labels: map[string]string{LabelDeployment: s.cfg.Prefix, LabelUser: user},
	})
	if err != nil {
		return "", fmt.Errorf("create volume %s: %w", name, err)
	}
	return name, nil
}

// RemoveVolume removes the user's home volume and so all their files. It
// refuses while any container, running or not, uses it, and wraps
// spawner.ErrNotFound when there is no such volume.
func (s *Spawner) RemoveVolume(ctx context.Context, user string) error {
	if err := spawner.ValidateUser(user); err != nil {
		return fmt.Errorf("remove volume of %s: %w", user, err)
	}
	name := s.volumeName(user)

	lctx, cancel := s.apiCtx(ctx)
	cs, err := s.cli.ContainerList(lctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("volume", name)),
	})
	cancel()
	if err != nil {
		return fmt.Errorf("remove volume of %s: list its containers: %w", user, err)
	}
	if len(cs) > 0 {
		return fmt.Errorf("remove volume of %s: volume %s is used by container %s", user, name, cs[0].ID)
	}

	rctx, cancel := s.apiCtx(ctx)
	defer cancel()
	err = s.cli.VolumeRemove(rctx, name, false)
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove volume of %s: %w: volume %s", user, spawner.ErrNotFound, name)
	}
	if err != nil {
		return fmt.Errorf("remove volume of %s: %w", user, err)
	}
	s.log.Info("removed volume", zap.String("user", user), zap.String("volume", name))
	return nil
}
