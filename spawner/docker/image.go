package docker

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/hubgate/hubgate/spawner"
)

// ResolveImage returns the ID ("sha256:...") of the image ref names on the
// engine, for a start's provenance. It never pulls.
func (s *Spawner) ResolveImage(ctx context.Context, ref string) (string, error) {
	ictx, cancel := s.apiCtx(ctx)
	defer cancel()
	img, err := s.cli.ImageInspect(ictx, ref)
	if cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("%w: %s", spawner.ErrImageMissing, ref)
	}
	if err != nil {
		return "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return img.ID, nil
}

// Interface guard.
var _ spawner.ImageResolver = (*Spawner)(nil)
