package kubernetes

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/hubgate/hubgate/spawner"
)

// containerName is the name of the one container in each pod.
const containerName = "server"

// maxLabel is the longest label value Kubernetes accepts.
const maxLabel = 63

// UserLabel returns the value of the hubgate.user label for user:
// spawner.EscapeDNS(user) when that fits a label value, else "h." and the
// first 40 hex digits of its SHA-256 (EscapeDNS never writes '.', so the
// two forms never collide).
func UserLabel(user string) string {
	if e := spawner.EscapeDNS(user); len(e) <= maxLabel {
		return e
	}
	sum := sha256.Sum256([]byte(user))
	return "h." + hex.EncodeToString(sum[:20])
}

// secretName is the name of a pod's Secret: the pod's name and a tag of
// the nonce, so that two replicas racing to create one pod never share (or
// overwrite) each other's secret.
func secretName(pod, nonce string) string {
	sum := sha256.Sum256([]byte(nonce))
	return pod + "-env-" + hex.EncodeToString(sum[:5])
}

// baseLabels are the labels of every object of user.
func (s *Spawner) baseLabels(user string) map[string]string {
	return map[string]string{
		LabelDeployment: s.cfg.Deployment,
		LabelUser:       UserLabel(user),
		LabelManagedBy:  "hubgate",
	}
}

// claim builds the user's home volume claim.
func (s *Spawner) claim(user string) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:        s.claimName(user),
			Labels:      s.baseLabels(user),
			Annotations: map[string]string{AnnotationUser: user},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.PersistentVolumeAccessMode(s.cfg.AccessMode)},
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: s.size},
			},
		},
	}
	if s.cfg.StorageClass != "" {
		c.Spec.StorageClassName = ptr.To(s.cfg.StorageClass)
	}
	return c
}

// secret builds the Secret holding spec.Env for pod name.
func (s *Spawner) secret(spec spawner.Spec, name string) *corev1.Secret {
	data := make(map[string][]byte, len(spec.Env))
	for k, v := range spec.Env {
		data[k] = []byte(v)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        secretName(name, spec.Nonce),
			Labels:      s.baseLabels(spec.User),
			Annotations: map[string]string{AnnotationUser: spec.User, AnnotationServer: spec.Server},
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
}

// pod builds the pod for spec. colocate asks for a required affinity to
// the node of the user's other pods (ReadWriteOnce volumes).
func (s *Spawner) pod(spec spawner.Spec, name, secret string, colocate bool) *corev1.Pod {
	labels := s.baseLabels(spec.User)
	labels[LabelServer] = spawner.EscapeDNS(spec.Server)
	if len(labels[LabelServer]) > maxLabel {
		labels[LabelServer] = UserLabel(spec.Server)
	}
	labels[LabelPort] = strconv.Itoa(spec.Port)
	ann := map[string]string{
		AnnotationUser:   spec.User,
		AnnotationServer: spec.Server,
		AnnotationImage:  spec.Image,
		AnnotationNonce:  spec.Nonce,
	}
	for k, v := range spec.Meta {
		ann[AnnotationMetaPrefix+k] = v
	}

	var env []corev1.EnvVar
	if _, ok := spec.Env["HOME"]; !ok {
		env = append(env, corev1.EnvVar{Name: "HOME", Value: spec.HomeMount})
	}

	hostname := spawner.EscapeDNS(spec.User)
	if len(hostname) > maxLabel {
		hostname = hostname[:maxLabel]
	}

	uid := s.cfg.RunAsUser
	c := corev1.Container{
		Name:            containerName,
		Image:           spec.Image,
		Args:            append([]string(nil), spec.Cmd...),
		Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: int32(spec.Port), Protocol: corev1.ProtocolTCP}},
		Env:             env,
		EnvFrom:         []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}},
		VolumeMounts:    []corev1.VolumeMount{{Name: "home", MountPath: spec.HomeMount}},
		Resources:       resources(spec),
		ImagePullPolicy: pullPolicy(spec.PullPolicy),
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			RunAsNonRoot:             ptr.To(true),
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: ann},
		Spec: corev1.PodSpec{
			Hostname:                      hostname,
			Containers:                    []corev1.Container{c},
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To(int64(s.cfg.StopGrace.Seconds())),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To(uid),
				RunAsGroup:     ptr.To(uid),
				FSGroup:        ptr.To(uid),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Volumes: []corev1.Volume{{
				Name: "home",
				VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
					ClaimName: s.claimName(spec.User),
				}},
			}},
			NodeSelector: nodeSelector(s.cfg.NodeSelector, spec.NodeSelector),
			Tolerations:  tolerations(spec.Tolerations),
		},
	}
	for _, ref := range s.cfg.ImagePullSecrets {
		p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: ref})
	}
	if colocate {
		p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
					LabelDeployment: s.cfg.Deployment,
					LabelUser:       UserLabel(spec.User),
				}},
				TopologyKey: "kubernetes.io/hostname",
			}},
		}}
	}
	return p
}

// resources maps the spec's limits to requests equal to limits (so the
// scheduler reserves what the pod may use). Pids has no per-pod field in
// Kubernetes (it is the kubelet's podPidsLimit) and is ignored.
func resources(spec spawner.Spec) corev1.ResourceRequirements {
	l := corev1.ResourceList{}
	if spec.Limits.MemoryBytes > 0 {
		l[corev1.ResourceMemory] = *resource.NewQuantity(spec.Limits.MemoryBytes, resource.BinarySI)
	}
	if spec.Limits.NanoCPUs > 0 {
		l[corev1.ResourceCPU] = *resource.NewMilliQuantity(max(spec.Limits.NanoCPUs/1e6, 1), resource.DecimalSI)
	}
	for name, n := range spec.ExtendedResources {
		if n > 0 {
			l[corev1.ResourceName(name)] = *resource.NewQuantity(n, resource.DecimalSI)
		}
	}
	if len(l) == 0 {
		return corev1.ResourceRequirements{}
	}
	return corev1.ResourceRequirements{Limits: l, Requests: l.DeepCopy()}
}

// pullPolicy maps spawner's pull policy; the default is IfNotPresent.
func pullPolicy(p string) corev1.PullPolicy {
	switch p {
	case spawner.PullAlways:
		return corev1.PullAlways
	case spawner.PullNever:
		return corev1.PullNever
	}
	return corev1.PullIfNotPresent
}

// nodeSelector merges spec over the configured default.
func nodeSelector(def, spec map[string]string) map[string]string {
	if len(def)+len(spec) == 0 {
		return nil
	}
	out := make(map[string]string, len(def)+len(spec))
	for k, v := range def {
		out[k] = v
	}
	for k, v := range spec {
		out[k] = v
	}
	return out
}

// tolerations maps spawner's tolerations.
func tolerations(ts []spawner.Toleration) []corev1.Toleration {
	var out []corev1.Toleration
	for _, t := range ts {
		op := corev1.TolerationOpEqual
		if t.Operator == "exists" {
			op = corev1.TolerationOpExists
		}
		out = append(out, corev1.Toleration{Key: t.Key, Operator: op, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
