package kubernetes

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/hubgate/hubgate/spawner"
)

// Stop deletes the user's pod with Config.StopGrace between SIGTERM and
// SIGKILL, and its Secret; the volume claim stays. It waits (up to the
// grace period and a little) until the pod is gone from the cache. It
// wraps spawner.ErrNotFound when there is no such pod; a pod deleted
// concurrently by someone else counts as stopped.
func (s *Spawner) Stop(ctx context.Context, user, server string) error {
	if err := validateKey(user, server); err != nil {
		return fmt.Errorf("stop server for %s/%s: %w", user, server, err)
	}
	if err := s.synced(ctx); err != nil {
		return fmt.Errorf("stop server for %s/%s: %w", user, server, err)
	}
	name := s.podName(user, server)
	p, err := s.lister.Get(name)
	if apierrors.IsNotFound(err) || err == nil && !s.owned(p, user, server) {
		return fmt.Errorf("stop server for %s/%s: %w: pod %s", user, server, spawner.ErrNotFound, name)
	}
	if err != nil {
		return fmt.Errorf("stop server for %s/%s: %w", user, server, err)
	}
	if err := s.deletePod(ctx, p, s.cfg.StopGrace); err != nil {
		return fmt.Errorf("stop server for %s/%s: %w", user, server, apiErr(err))
	}
	deadline := time.Now().Add(s.cfg.StopGrace + 10*time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if q, err := s.lister.Get(name); apierrors.IsNotFound(err) || err == nil && q.UID != p.UID {
			break
		}
		_ = spawner.Sleep(ctx, 20*time.Millisecond, "the pod to go")
	}
	s.log.Info("stopped server", zap.String("user", user), zap.String("server", server),
		zap.String("pod", name), zap.String("pod_uid", string(p.UID)))
	return nil
}

// deletePod deletes pod p (by UID: the name may belong to a newer pod) with
// the given grace, then the Secrets it reads. Already gone is not an error.
func (s *Spawner) deletePod(ctx context.Context, p *corev1.Pod, grace time.Duration) error {
	dctx, cancel := s.apiCtx(ctx)
	err := s.cs.CoreV1().Pods(s.cfg.Namespace).Delete(dctx, p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To(int64(grace.Seconds())),
		Preconditions:      &metav1.Preconditions{UID: &p.UID},
	})
	cancel()
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete pod %s: %w", p.Name, err)
	}
	for _, c := range p.Spec.Containers {
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				if err := s.deleteSecret(ctx, e.SecretRef.Name); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// deleteSecret deletes Secret name; already gone is not an error.
func (s *Spawner) deleteSecret(ctx context.Context, name string) error {
	dctx, cancel := s.apiCtx(ctx)
	defer cancel()
	err := s.cs.CoreV1().Secrets(s.cfg.Namespace).Delete(dctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete secret %s: %w", name, err)
	}
	return nil
}
