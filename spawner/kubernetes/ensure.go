package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hubgate/hubgate/spawner"
)

// maxEnsureRounds bounds how often Ensure looks again at a pod that
// changes under it (being deleted, or created by another replica).
const maxEnsureRounds = 300

// maxName is the longest object name Kubernetes accepts.
const maxName = 253

// secretKeyRE is what Kubernetes accepts as a Secret data key.
var secretKeyRE = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// flight is one Ensure in progress; concurrent Ensures of the same pod in
// this process wait for it instead of racing through the API.
type flight struct {
	done chan struct{}
	inst spawner.Instance
	err  error
}

// Ensure returns the user's server, creating the user's volume claim (if
// missing), the pod's Secret and the pod as needed. It waits only until
// the pod exists (and is in the informer's cache), not until it is
// scheduled or ready: the returned Instance may be pending, with Addr ""
// and the reason in Status. Poll Get (served from the cache) for the Addr.
//
// A pod of the fixed name that is up (pending or running) is returned as
// it is, even if spec differs: the Instance's Nonce is the one to derive
// its secret from. One that failed or exited is deleted (with its Secret)
// and created anew on the same claim; one being deleted is waited for.
// Concurrent calls, in one process or across replicas, yield one pod: the
// API server's name uniqueness decides, and the loser adopts the winner's
// pod and deletes its own Secret.
func (s *Spawner) Ensure(ctx context.Context, spec spawner.Spec) (spawner.Instance, error) {
	inst, err := s.ensureShared(ctx, spec)
	if err != nil {
		return spawner.Instance{}, fmt.Errorf("ensure server for %s/%s: %w", spec.User, spec.Server, apiErr(err))
	}
	return inst, nil
}

// ensureShared runs ensure once per pod name at a time in this process.
func (s *Spawner) ensureShared(ctx context.Context, spec spawner.Spec) (spawner.Instance, error) {
	name := s.podName(spec.User, spec.Server)
	for {
		s.flightMu.Lock()
		f, busy := s.flights[name]
		if !busy {
			f = &flight{done: make(chan struct{})}
			s.flights[name] = f
			s.flightMu.Unlock()
			f.inst, f.err = s.ensure(ctx, spec, name)
			s.flightMu.Lock()
			delete(s.flights, name)
			s.flightMu.Unlock()
			close(f.done)
			return f.inst, f.err
		}
		s.flightMu.Unlock()
		select {
		case <-ctx.Done():
			return spawner.Instance{}, fmt.Errorf("wait for a concurrent start: %w", ctx.Err())
		case <-f.done:
		}
		if f.err == nil || !isCtxErr(f.err) || ctx.Err() != nil {
			return f.inst, f.err
		}
		// The other caller gave up (its context ended) but ours is live:
		// try ourselves.
	}
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// ensure converges on one up pod named name.
func (s *Spawner) ensure(ctx context.Context, spec spawner.Spec, name string) (spawner.Instance, error) {
	if err := spec.Validate(); err != nil {
		return spawner.Instance{}, err
	}
	if len(name) > maxName || len(s.claimName(spec.User)) > maxName {
		return spawner.Instance{}, fmt.Errorf("pod name %s... is longer than %d bytes; use a shorter user name or server key", name[:40], maxName)
	}
	for k := range spec.Env {
		if !secretKeyRE.MatchString(k) {
			return spawner.Instance{}, fmt.Errorf("environment variable name %q cannot be a Secret key ([-._a-zA-Z0-9]+)", k)
		}
	}
	if err := s.synced(ctx); err != nil {
		return spawner.Instance{}, err
	}
	log := s.log.With(zap.String("user", spec.User), zap.String("server", spec.Server), zap.String("pod", name))

	for round := 0; round < maxEnsureRounds; round++ {
		if round > 0 {
			if err := spawner.Sleep(ctx, spawner.Backoff(round), "the pod to settle"); err != nil {
				return spawner.Instance{}, err
			}
		}
		p, err := s.lister.Get(name)
		switch {
		case apierrors.IsNotFound(err):
			inst, again, err := s.create(ctx, spec, name, log)
			if again {
				continue
			}
			return inst, err
		case err != nil:
			return spawner.Instance{}, fmt.Errorf("look up pod %s: %w", name, err)
		case !s.owned(p, spec.User, spec.Server):
			return spawner.Instance{}, fmt.Errorf("pod %s exists but is not hubgate deployment %s's server %s/%s",
				name, s.cfg.Deployment, spec.User, spec.Server)
		case up(p):
			return fromPod(p), nil
		case p.DeletionTimestamp != nil:
			log.Debug("waiting for the old pod to go", zap.String("pod_uid", string(p.UID)))
		default:
			log.Info("deleting finished pod to create it anew",
				zap.String("pod_uid", string(p.UID)), zap.String("status", podStatus(p)))
			if err := s.deletePod(ctx, p, 0); err != nil {
				return spawner.Instance{}, err
			}
		}
	}
	return spawner.Instance{}, fmt.Errorf("pod %s kept changing state; gave up after %d rounds", name, maxEnsureRounds)
}

// create creates the claim (if missing), the Secret and the pod, then makes
// the pod own the Secret. again reports that the caller should look anew.
func (s *Spawner) create(ctx context.Context, spec spawner.Spec, name string, log *zap.Logger) (inst spawner.Instance, again bool, err error) {
	if err := s.ensureClaim(ctx, spec.User, log); err != nil {
		return inst, false, err
	}

	sec := s.secret(spec, name)
	cctx, cancel := s.apiCtx(ctx)
	_, err = s.cs.CoreV1().Secrets(s.cfg.Namespace).Create(cctx, sec, metav1.CreateOptions{})
	cancel()
	if apierrors.IsAlreadyExists(err) {
		// Left over from a start that died between Secret and pod (same
		// nonce): replace it.
		log.Warn("deleting leftover secret", zap.String("secret", sec.Name))
		return inst, true, s.deleteSecret(ctx, sec.Name)
	}
	if err != nil {
		return inst, false, fmt.Errorf("create secret %s: %w", sec.Name, err)
	}

	pod := s.pod(spec, name, sec.Name, s.colocate(spec.User, name))
	cctx, cancel = s.apiCtx(ctx)
	created, err := s.cs.CoreV1().Pods(s.cfg.Namespace).Create(cctx, pod, metav1.CreateOptions{})
	cancel()
	if err != nil {
		if derr := s.deleteSecret(ctx, sec.Name); derr != nil {
			log.Warn("delete secret after failed pod create", zap.String("secret", sec.Name), zap.Error(derr))
		}
		if apierrors.IsAlreadyExists(err) {
			log.Debug("pod created concurrently by someone else; adopting it")
			return s.adopt(ctx, spec, name)
		}
		return inst, false, fmt.Errorf("create pod %s: %w", name, err)
	}

	if err := s.ownSecret(ctx, sec.Name, created); err != nil {
		// The pod runs regardless; Stop deletes the Secret by name.
		log.Warn("make pod own its secret", zap.String("secret", sec.Name), zap.Error(err))
	}
	log.Info("created pod", zap.String("pod_uid", string(created.UID)), zap.String("image", spec.Image),
		zap.String("claim", s.claimName(spec.User)), zap.Bool("colocated", pod.Spec.Affinity != nil))
	s.awaitCache(ctx, name, created.UID)
	return fromPod(created), false, nil
}

// adopt returns the pod another caller created, read from the API (the
// cache may not have it yet). again reports it is gone or finished.
func (s *Spawner) adopt(ctx context.Context, spec spawner.Spec, name string) (spawner.Instance, bool, error) {
	gctx, cancel := s.apiCtx(ctx)
	p, err := s.cs.CoreV1().Pods(s.cfg.Namespace).Get(gctx, name, metav1.GetOptions{})
	cancel()
	if apierrors.IsNotFound(err) {
		return spawner.Instance{}, true, nil
	}
	if err != nil {
		return spawner.Instance{}, false, fmt.Errorf("get pod %s: %w", name, err)
	}
	if !s.owned(p, spec.User, spec.Server) {
		return spawner.Instance{}, false, fmt.Errorf("pod %s exists but is not hubgate deployment %s's server %s/%s",
			name, s.cfg.Deployment, spec.User, spec.Server)
	}
	if !up(p) {
		return spawner.Instance{}, true, nil
	}
	s.awaitCache(ctx, name, p.UID)
	return fromPod(p), false, nil
}

// ensureClaim creates the user's claim unless it exists.
func (s *Spawner) ensureClaim(ctx context.Context, user string, log *zap.Logger) error {
	c := s.claim(user)
	cctx, cancel := s.apiCtx(ctx)
	defer cancel()
	_, err := s.cs.CoreV1().PersistentVolumeClaims(s.cfg.Namespace).Create(cctx, c, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create volume claim %s: %w", c.Name, err)
	}
	log.Info("created volume claim", zap.String("claim", c.Name), zap.String("size", s.cfg.VolumeSize),
		zap.String("storage_class", s.cfg.StorageClass), zap.String("access_mode", s.cfg.AccessMode))
	return nil
}

// ownSecret makes pod the owner of Secret name, so the garbage collector
// deletes it with the pod.
func (s *Spawner) ownSecret(ctx context.Context, name string, pod *corev1.Pod) error {
	patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Pod","name":%q,"uid":%q}]}}`,
		pod.Name, pod.UID)
	pctx, cancel := s.apiCtx(ctx)
	defer cancel()
	_, err := s.cs.CoreV1().Secrets(s.cfg.Namespace).Patch(pctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("patch secret %s: %w", name, err)
	}
	return nil
}

// colocate reports whether the user's new pod must go to the node of
// their other pods: with ReadWriteOnce claims, when another is up.
func (s *Spawner) colocate(user, name string) bool {
	if s.cfg.AccessMode != ReadWriteOnce {
		return false
	}
	pods, err := s.lister.List(labels.SelectorFromSet(labels.Set{LabelUser: UserLabel(user)}))
	if err != nil {
		return false
	}
	for _, p := range pods {
		if p.Name != name && up(p) && p.Annotations[AnnotationUser] == user {
			return true
		}
	}
	return false
}

// awaitCache waits briefly until the informer has the pod with uid, so a
// Get right after Ensure sees it.
func (s *Spawner) awaitCache(ctx context.Context, name string, uid types.UID) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if p, err := s.lister.Get(name); err == nil && p.UID == uid {
			return
		}
		_ = spawner.Sleep(ctx, 10*time.Millisecond, "the pod to settle")
	}
}
