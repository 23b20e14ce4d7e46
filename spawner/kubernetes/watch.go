package kubernetes

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// WatchExits implements spawner.ExitWatcher from the informer, without an
// API call of its own: fn is called when a pod of the deployment is
// deleted, fails or exits (an eviction is a failure), starts being deleted,
// or stops being routable (it was Ready with an IP and is not any more).
// Calls are made one at a time, from the informer's goroutine: fn must not
// block. It returns ctx's error when ctx ends; the informer itself retries
// a broken watch, so there is no stream error to return.
func (s *Spawner) WatchExits(ctx context.Context, fn func(user, server, podUID string)) error {
	notify := func(p *corev1.Pod) {
		if u, sv := p.Annotations[AnnotationUser], p.Annotations[AnnotationServer]; u != "" && sv != "" {
			fn(u, sv, string(p.UID))
		}
	}
	reg, err := s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Pod)
			n, ok2 := newObj.(*corev1.Pod)
			if !ok1 || !ok2 {
				return
			}
			if up(o) && !up(n) || fromPod(o).Addr != "" && fromPod(n).Addr == "" {
				notify(n)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				notify(p)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watch pod exits: %w", err)
	}
	defer func() { _ = s.informer.RemoveEventHandler(reg) }()
	<-ctx.Done()
	return ctx.Err()
}
