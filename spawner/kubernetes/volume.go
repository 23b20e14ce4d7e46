package kubernetes

import (
	"context"
	"fmt"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/hubgate/hubgate/spawner"
)

// RemoveVolume deletes the user's volume claim and so (with the usual
// Delete reclaim policy) all their files. It refuses while any pod of the
// user, in any state, is in the cache, and wraps spawner.ErrNotFound when
// there is no such claim.
func (s *Spawner) RemoveVolume(ctx context.Context, user string) error {
	if err := spawner.ValidateUser(user); err != nil {
		return fmt.Errorf("remove volume of %s: %w", user, err)
	}
	if err := s.synced(ctx); err != nil {
		return fmt.Errorf("remove volume of %s: %w", user, err)
	}
	name := s.claimName(user)
	pods, err := s.lister.List(labels.SelectorFromSet(labels.Set{LabelUser: UserLabel(user)}))
	if err != nil {
		return fmt.Errorf("remove volume of %s: %w", user, err)
	}
	for _, p := range pods {
		if p.Annotations[AnnotationUser] == user {
			return fmt.Errorf("remove volume of %s: volume claim %s is used by pod %s", user, name, p.Name)
		}
	}
	dctx, cancel := s.apiCtx(ctx)
	defer cancel()
	err = s.cs.CoreV1().PersistentVolumeClaims(s.cfg.Namespace).Delete(dctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("remove volume of %s: %w: volume claim %s", user, spawner.ErrNotFound, name)
	}
	if err != nil {
		return fmt.Errorf("remove volume of %s: %w", user, apiErr(err))
	}
	s.log.Info("removed volume claim", zap.String("user", user), zap.String("claim", name))
	return nil
}
