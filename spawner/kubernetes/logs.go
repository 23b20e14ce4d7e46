package kubernetes

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"

	"github.com/hubgate/hubgate/spawner"
)

// Logs returns the last lines of the server's output through the pods/log
// subresource (at most 1 MiB). It works for a pod that failed or exited
// too, until the next Ensure or Stop deletes it. It wraps
// spawner.ErrNotFound when there is no such pod.
func (s *Spawner) Logs(ctx context.Context, user, server string, lines int) (string, error) {
	if err := validateKey(user, server); err != nil {
		return "", fmt.Errorf("logs of server %s/%s: %w", user, server, err)
	}
	if lines <= 0 {
		lines = spawner.DefaultLogLines
	}
	name := s.podName(user, server)
	lctx, cancel := s.apiCtx(ctx)
	defer cancel()
	out, err := s.cs.CoreV1().Pods(s.cfg.Namespace).GetLogs(name, &corev1.PodLogOptions{
		Container:  containerName,
		TailLines:  ptr.To(int64(lines)),
		LimitBytes: ptr.To(int64(spawner.MaxLogBytes)),
	}).DoRaw(lctx)
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("logs of server %s/%s: %w: pod %s", user, server, spawner.ErrNotFound, name)
	}
	if err != nil {
		return "", fmt.Errorf("logs of server %s/%s: %w", user, server, apiErr(err))
	}
	return string(out), nil
}
