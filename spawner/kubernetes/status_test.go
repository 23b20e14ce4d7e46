package kubernetes

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPodStatusReasons pins the words the gateway shows for pod states a
// kubelet reports (kwok never fails an image pull, so these are built
// here).
func TestPodStatusReasons(t *testing.T) {
	waitingPod := func(reason, msg string) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: containerName, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
		}}}}
	}
	now := metav1.NewTime(time.Now())
	for _, tc := range []struct {
		pod  *corev1.Pod
		want string
	}{
		{waitingPod("ImagePullBackOff", `Back-off pulling image "x"`), `pending: ImagePullBackOff: Back-off pulling image "x"`},
		{waitingPod("ErrImageNeverPull", "Container image \"x\" is not present with pull policy of Never"),
			`pending: ErrImageNeverPull: Container image "x" is not present with pull policy of Never`},
		{waitingPod("ContainerCreating", ""), "pending: waiting to be scheduled"},
		{&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
			Message: "0/1 nodes are available: 1 Insufficient memory."}}}},
			"pending: Unschedulable: 0/1 nodes are available: 1 Insufficient memory."},
		{&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "low on memory"}}, "failed: Evicted: low on memory"},
		{&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled"}}}}}}, "failed: OOMKilled"},
		{&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}, "exited"},
		{&corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}, "terminating"},
		{&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}, "starting"},
	} {
		if got := podStatus(tc.pod); got != tc.want {
			t.Errorf("podStatus = %q, want %q", got, tc.want)
		}
		if inst := fromPod(tc.pod); inst.Addr != "" {
			t.Errorf("%q: routable", tc.want)
		}
	}
}
