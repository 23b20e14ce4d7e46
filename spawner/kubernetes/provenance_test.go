package kubernetes

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestImageIDFromPodStatus: the image a pod runs, as the kubelet reports
// it, is the Instance's ImageID (the provenance record's image_id); other
// containers' images are not.
func TestImageIDFromPodStatus(t *testing.T) {
	const digest = "docker.io/hubgate/jupyter@sha256:4f5a3c1b2d"
	pod := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
		{Name: "sidecar", ImageID: "docker.io/other@sha256:0000"},
		{Name: containerName, ImageID: digest, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
	}}}
	if got := fromPod(pod).ImageID; got != digest {
		t.Fatalf("ImageID %q, want %q", got, digest)
	}
	pending := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}
	if got := fromPod(pending).ImageID; got != "" {
		t.Fatalf("a pending pod's ImageID %q", got)
	}
}
