package k8stest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// startBinder stands in for kube-controller-manager's volume binder: every
// pending claim, in any namespace, gets a hostPath PersistentVolume of its
// size, access modes and class, and both are marked Bound, so the
// scheduler accepts pods that use claims. It runs until ctx ends.
func (cp *ControlPlane) startBinder(ctx context.Context) {
	f := informers.NewSharedInformerFactory(cp.client, 0)
	inf := f.Core().V1().PersistentVolumeClaims().Informer()
	q := workqueue.NewTyped[string]()
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			q.Add(key)
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n any) { enqueue(n) },
	})
	f.Start(ctx.Done())
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	go func() {
		for {
			key, quit := q.Get()
			if quit {
				return
			}
			if err := cp.bind(ctx, key); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "k8stest binder: %s: %v (retrying)\n", key, err)
				go func() { time.Sleep(200 * time.Millisecond); q.Add(key) }()
			}
			q.Done(key)
		}
	}()
}

// bind binds claim key ("ns/name") to a new volume, if it is pending.
func (cp *ControlPlane) bind(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pvcs := cp.client.CoreV1().PersistentVolumeClaims(ns)
	c, err := pvcs.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.DeletionTimestamp != nil || c.Status.Phase == corev1.ClaimBound {
		return nil
	}
	sum := sha256.Sum256([]byte(key))
	pvName := "k8stest-pv-" + hex.EncodeToString(sum[:8])
	size := c.Spec.Resources.Requests[corev1.ResourceStorage]
	class := ""
	if c.Spec.StorageClassName != nil {
		class = *c.Spec.StorageClassName
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName, Labels: map[string]string{"k8stest": "binder"}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   c.Spec.AccessModes,
			StorageClassName:              class,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: "/tmp/k8stest-volumes/" + pvName,
			}},
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: ns, Name: name, UID: c.UID},
		},
	}
	created, err := cp.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = cp.client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("create volume: %w", err)
	}
	if created.Status.Phase != corev1.VolumeBound {
		created.Status.Phase = corev1.VolumeBound
		if _, err := cp.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("mark volume bound: %w", err)
		}
	}
	if c.Spec.VolumeName == "" {
		c.Spec.VolumeName = pvName
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations["pv.kubernetes.io/bind-completed"] = "yes"
		if c, err = pvcs.Update(ctx, c, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("set volume name: %w", err)
		}
	}
	c.Status.Phase = corev1.ClaimBound
	c.Status.AccessModes = c.Spec.AccessModes
	c.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: size}
	if _, err := pvcs.UpdateStatus(ctx, c, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("mark claim bound: %w", err)
	}
	return nil
}
