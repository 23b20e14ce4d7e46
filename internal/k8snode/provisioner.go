package k8snode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// provisionerName is the StorageClass provisioner of HostPathClass.
const provisionerName = "k8snode.hubgate.local/hostpath"

// startProvisioner creates StorageClass class and provisions every PVC of
// that class that has no volume: a directory WorkDir/node/volumes/<ns>-<pvc>
// (mode 0777, so non-root pods can write) as a Retain hostPath PV pre-bound
// to the claim, which kube-controller-manager's binder then binds.
func (n *Node) startProvisioner(ctx context.Context, class string) error {
	mode := storagev1.VolumeBindingImmediate
	reclaim := corev1.PersistentVolumeReclaimRetain
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: class, Labels: map[string]string{"k8snode.hubgate.local/node": n.name}},
		Provisioner:       provisionerName,
		ReclaimPolicy:     &reclaim,
		VolumeBindingMode: &mode,
	}
	if _, err := n.client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create storage class %s: %w", class, err)
	}
	pctx, cancel := context.WithCancel(context.Background())
	n.stopProvisioner = cancel
	factory := informers.NewSharedInformerFactory(n.client, 0)
	inf := factory.Core().V1().PersistentVolumeClaims().Informer()
	handle := func(obj any) {
		pvc, ok := obj.(*corev1.PersistentVolumeClaim)
		if !ok || pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != class || pvc.Spec.VolumeName != "" || pvc.DeletionTimestamp != nil {
			return
		}
		if err := n.provision(pctx, class, pvc); err != nil {
			fmt.Fprintf(n.provisionLog, "%s provision %s/%s: %v\n", time.Now().Format(time.RFC3339), pvc.Namespace, pvc.Name, err)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
	}); err != nil {
		return fmt.Errorf("watch PVCs: %w", err)
	}
	factory.Start(pctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("sync PVC informer: %w", ctx.Err())
	}
	return nil
}

// provision creates the directory and the PV for pvc (once: the PV's name
// is derived from the claim's UID).
func (n *Node) provision(ctx context.Context, class string, pvc *corev1.PersistentVolumeClaim) error {
	name := "k8snode-" + string(pvc.UID)
	dir := filepath.Join(n.dir, "volumes", pvc.Namespace+"-"+pvc.Name+"-"+string(pvc.UID)[:8])
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return fmt.Errorf("make volume dir: %w", err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return fmt.Errorf("chmod volume dir: %w", err)
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	modes := pvc.Spec.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{"k8snode.hubgate.local/node": n.name},
			Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": provisionerName},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   modes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              class,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}},
		},
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := n.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create PV %s: %w", name, err)
	}
	return nil
}

// deleteProvisioned removes the storage class and the PVs the provisioner
// made (their directories go with the work dir).
func (n *Node) deleteProvisioned(ctx context.Context, class string) error {
	sel := metav1.ListOptions{LabelSelector: "k8snode.hubgate.local/node=" + n.name}
	if err := n.client.CoreV1().PersistentVolumes().DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil {
		return fmt.Errorf("delete provisioned PVs: %w", err)
	}
	if err := n.client.StorageV1().StorageClasses().Delete(ctx, class, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete storage class %s: %w", class, err)
	}
	return nil
}
