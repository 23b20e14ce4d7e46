package caddymodule

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/hubgate/hubgate/spawner/kubernetes"
)

// KubernetesConfig configures the Kubernetes spawner.
type KubernetesConfig struct {
	// Namespace holds the user pods, claims and secrets. Default: the
	// gateway's own namespace in a cluster, else the kubeconfig's, else
	// "default".
	Namespace string `json:"namespace,omitempty"`

	// Kubeconfig is the path of a kubeconfig file. Default: the in-cluster
	// service account, then $KUBECONFIG or ~/.kube/config.
	Kubeconfig string `json:"kubeconfig,omitempty"`

	// StorageClass is the storage class of the users' home claims.
	// Default: the cluster's default class.
	StorageClass string `json:"storage_class,omitempty"`

	// VolumeSize is the size of each user's home claim, such as "10Gi".
	// Default: 10Gi.
	VolumeSize string `json:"volume_size,omitempty"`

	// AccessMode is the claims' access mode: "ReadWriteOnce" (a user's
	// pods are kept on the node that has the volume) or "ReadWriteMany".
	// Default: ReadWriteOnce.
	AccessMode string `json:"access_mode,omitempty"`

	// NodeSelector restricts every user pod to nodes with these labels
	// (images may add their own).
	NodeSelector map[string]string `json:"node_selector,omitempty"`

	// ImagePullSecrets are secrets in the namespace used to pull images.
	ImagePullSecrets []string `json:"image_pull_secrets,omitempty"`

	// RunAsUser is the uid (and gid and fsGroup) user pods run as; pods
	// never run as root. Default: 1000.
	RunAsUser int64 `json:"run_as_user,omitempty"`

	// APITimeout bounds each call to the API server. Default: 30s.
	APITimeout caddy.Duration `json:"api_timeout,omitempty"`

	// StopGrace is the termination grace period of a stopped pod.
	// Default: 5s.
	StopGrace caddy.Duration `json:"stop_grace,omitempty"`
}

func (k *KubernetesConfig) config(deployment string) kubernetes.Config {
	return kubernetes.Config{
		Namespace:        k.Namespace,
		Kubeconfig:       k.Kubeconfig,
		Deployment:       deployment,
		StorageClass:     k.StorageClass,
		VolumeSize:       k.VolumeSize,
		AccessMode:       k.AccessMode,
		NodeSelector:     k.NodeSelector,
		ImagePullSecrets: k.ImagePullSecrets,
		RunAsUser:        k.RunAsUser,
		APITimeout:       time.Duration(k.APITimeout),
		StopGrace:        time.Duration(k.StopGrace),
	}
}

func (k *KubernetesConfig) validate() error {
	switch k.AccessMode {
	case "", "ReadWriteOnce", "ReadWriteMany":
	default:
		return fmt.Errorf("hubgate: kubernetes access_mode %q must be ReadWriteOnce or ReadWriteMany", k.AccessMode)
	}
	if k.RunAsUser < 0 || k.APITimeout < 0 || k.StopGrace < 0 {
		return errors.New("hubgate: kubernetes run_as_user, api_timeout and stop_grace must not be negative")
	}
	return nil
}

// unmarshalKubernetes parses the kubernetes block:
//
//	kubernetes {
//		namespace <name>
//		kubeconfig <path>
//		storage_class <class>
//		volume_size <size>
//		access_mode ReadWriteOnce|ReadWriteMany
//		node_selector <label> <value>
//		image_pull_secrets <secret>...
//		run_as_user <uid>
//		api_timeout <duration>
//		stop_grace <duration>
//	}
func (h *Handler) unmarshalKubernetes(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	if h.Kubernetes != nil {
		return d.Err("kubernetes is configured twice")
	}
	k := new(KubernetesConfig)
	for d.NextBlock(1) {
		opt := d.Val()
		var err error
		switch opt {
		case "namespace":
			err = oneArg(d, &k.Namespace)
		case "kubeconfig":
			err = oneArg(d, &k.Kubeconfig)
		case "storage_class":
			err = oneArg(d, &k.StorageClass)
		case "volume_size":
			err = oneArg(d, &k.VolumeSize)
		case "access_mode":
			err = oneArg(d, &k.AccessMode)
		case "node_selector":
			var label, value string
			if !d.AllArgs(&label, &value) {
				return d.ArgErr()
			}
			if k.NodeSelector == nil {
				k.NodeSelector = map[string]string{}
			}
			k.NodeSelector[label] = value
		case "image_pull_secrets":
			var names []string
			names, err = someArgs(d)
			k.ImagePullSecrets = append(k.ImagePullSecrets, names...)
		case "run_as_user":
			var v string
			if err = oneArg(d, &v); err == nil {
				if k.RunAsUser, err = strconv.ParseInt(v, 10, 64); err != nil {
					return d.Errf("run_as_user: %v", err)
				}
			}
		case "api_timeout", "stop_grace":
			var v string
			if err = oneArg(d, &v); err == nil {
				dur, perr := caddy.ParseDuration(v)
				if perr != nil {
					return d.Errf("%s: %v", opt, perr)
				}
				if opt == "api_timeout" {
					k.APITimeout = caddy.Duration(dur)
				} else {
					k.StopGrace = caddy.Duration(dur)
				}
			}
		default:
			return d.Errf("unrecognized kubernetes option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	h.Kubernetes = k
	return nil
}
