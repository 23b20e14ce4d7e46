package kubernetes

import (
	"net"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/hubgate/hubgate/spawner"
)

// fromPod converts a pod into an Instance. Addr is set only for a pod that
// is Running, Ready, not being deleted and has an IP: that is when it is
// routable.
func fromPod(p *corev1.Pod) spawner.Instance {
	inst := spawner.Instance{
		ID:      string(p.UID),
		Name:    p.Name,
		User:    p.Annotations[AnnotationUser],
		Server:  p.Annotations[AnnotationServer],
		Image:   p.Annotations[AnnotationImage],
		Nonce:   p.Annotations[AnnotationNonce],
		Created: p.CreationTimestamp.UTC(),
		Status:  podStatus(p),
		Node:    p.Spec.NodeName,
	}
	for k, v := range p.Annotations {
		if key, ok := strings.CutPrefix(k, AnnotationMetaPrefix); ok {
			if inst.Meta == nil {
				inst.Meta = make(map[string]string)
			}
			inst.Meta[key] = v
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == containerName && cs.State.Running != nil {
			inst.Started = cs.State.Running.StartedAt.UTC()
		}
		if cs.Name == containerName {
			inst.ImageID = cs.ImageID
		}
	}
	inst.Running = p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning
	if inst.Running && ready(p) && p.Status.PodIP != "" && p.Labels[LabelPort] != "" {
		inst.Addr = net.JoinHostPort(p.Status.PodIP, p.Labels[LabelPort])
	}
	return inst
}

// ready reports the pod's Ready condition.
func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// up reports whether the pod is (or is about to be) serving: not being
// deleted, not finished.
func up(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded
}

// podStatus is the pod's state in words, with the reason when it is not
// running: "running", "starting", "terminating", "exited", "failed:
// Evicted: ...", or "pending: Unschedulable: 0/1 nodes are available: 1
// Insufficient memory." and "pending: ImagePullBackOff: ...", which is
// what the gateway shows a waiting user and the admin page.
func podStatus(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "terminating"
	}
	switch p.Status.Phase {
	case corev1.PodRunning:
		if ready(p) {
			return "running"
		}
		if w := waiting(p); w != "" {
			return "starting: " + w
		}
		return "starting"
	case corev1.PodSucceeded:
		return "exited"
	case corev1.PodFailed:
		if t := terminated(p); t != "" {
			return "failed: " + t
		}
		return "failed" + reasonSuffix(p.Status.Reason, p.Status.Message)
	}
	// Pending (or unknown): a waiting container says most (image pull,
	// config error); else the scheduler's verdict.
	if w := waiting(p); w != "" {
		return "pending: " + w
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return "pending" + reasonSuffix(c.Reason, c.Message)
		}
	}
	if p.Spec.NodeName == "" {
		return "pending: waiting to be scheduled"
	}
	return "pending: scheduled on " + p.Spec.NodeName
}

// waiting describes a waiting container ("ImagePullBackOff: Back-off
// pulling image ..."), or "".
func waiting(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" {
			return strings.TrimPrefix(reasonSuffix(w.Reason, w.Message), ": ")
		}
	}
	return ""
}

// terminated describes a terminated container, or "".
func terminated(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			s := t.Reason
			if s == "" {
				s = "exited"
			}
			if p.Status.Reason != "" {
				s = p.Status.Reason + ": " + s
			}
			return s
		}
	}
	return ""
}

// reasonSuffix renders ": reason: message", dropping empty parts.
func reasonSuffix(reason, msg string) string {
	var b strings.Builder
	if reason != "" {
		b.WriteString(": " + reason)
	}
	if msg = strings.TrimSpace(msg); msg != "" {
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		b.WriteString(": " + msg)
	}
	return b.String()
}
