package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/hubgate/hubgate/spawner"
)

// Logs returns the last lines of the server's stdout and stderr,
// interleaved as the engine stored them (at most 1 MiB). It works for
// stopped containers too (until Stop or the next Ensure removes them), which
// is what an error report after a failed start needs. It wraps
// spawner.ErrNotFound when there is no such container.
func (s *Spawner) Logs(ctx context.Context, user, server string, lines int) (string, error) {
	if err := validateKey(user, server); err != nil {
		return "", fmt.Errorf("logs of server %s/%s: %w", user, server, err)
	}
	if lines <= 0 {
		lines = spawner.DefaultLogLines
	}
	name := s.containerName(user, server)
	lctx, cancel := s.apiCtx(ctx)
	defer cancel()
	rc, err := s.cli.ContainerLogs(lctx, name, container.LogsOptions{
		ShowStdout: true,
		ShowStderr: true,
		Tail:       strconv.Itoa(lines),
	})
	if cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("logs of server %s/%s: %w: container %s", user, server, spawner.ErrNotFound, name)
	}
	if err != nil {
		return "", fmt.Errorf("logs of server %s/%s: %w", user, server, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	// Containers run without a TTY, so the stream is multiplexed.
	if _, err := stdcopy.StdCopy(&buf, &buf, io.LimitReader(rc, spawner.MaxLogBytes)); err != nil && buf.Len() == 0 {
		return "", fmt.Errorf("logs of server %s/%s: read: %w", user, server, err)
	}
	return buf.String(), nil
}
