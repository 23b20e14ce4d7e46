package kubernetes

import (
	"context"
	"fmt"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/hubgate/hubgate/spawner"
)

// Get returns the user's server from the informer's cache, without an API
// call once the cache has synced (the first call waits for that). It wraps
// spawner.ErrNotFound when there is no such pod.
func (s *Spawner) Get(ctx context.Context, user, server string) (spawner.Instance, error) {
	if err := validateKey(user, server); err != nil {
		return spawner.Instance{}, fmt.Errorf("get server for %s/%s: %w", user, server, err)
	}
	if err := s.synced(ctx); err != nil {
		return spawner.Instance{}, fmt.Errorf("get server for %s/%s: %w", user, server, err)
	}
	name := s.podName(user, server)
	p, err := s.lister.Get(name)
	if apierrors.IsNotFound(err) || err == nil && !s.owned(p, user, server) {
		return spawner.Instance{}, fmt.Errorf("get server for %s/%s: %w: pod %s", user, server, spawner.ErrNotFound, name)
	}
	if err != nil {
		return spawner.Instance{}, fmt.Errorf("get server for %s/%s: %w", user, server, err)
	}
	return fromPod(p), nil
}

// List returns every server of this deployment from the informer's cache,
// sorted by pod name: one list (and a watch) when the cache first syncs,
// no API call afterwards. Pods labelled by hand without the user and
// server annotations are left out.
func (s *Spawner) List(ctx context.Context) ([]spawner.Instance, error) {
	if err := s.synced(ctx); err != nil {
		return nil, fmt.Errorf("list servers of deployment %s: %w", s.cfg.Deployment, err)
	}
	pods, err := s.lister.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list servers of deployment %s: %w", s.cfg.Deployment, err)
	}
	out := make([]spawner.Instance, 0, len(pods))
	for _, p := range pods {
		if p.Annotations[AnnotationUser] == "" || p.Annotations[AnnotationServer] == "" {
			continue
		}
		out = append(out, fromPod(p))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
