package docker

import (
	"github.com/docker/docker/api/types/container"

	"github.com/hubgate/hubgate/spawner"
)

// tmpfsOptions are the mount options of /tmp in a container whose root
// filesystem is read-only. Its size counts against the memory limit.
const tmpfsOptions = "rw,nosuid,nodev,mode=1777"

// harden gives a user's container least privilege: every capability
// dropped except those spec adds back (Docker's defaults include NET_RAW,
// with which a root process answers ARP for a neighbour's address and reads
// its traffic), no-new-privileges (setuid binaries and file capabilities
// gain nothing), and optionally a read-only root filesystem with a tmpfs at
// /tmp. Resource limits are spec's own: the policy fills in defaults.
func harden(hc *container.HostConfig, spec spawner.Spec) {
	hc.CapDrop = []string{"ALL"}
	if len(spec.CapAdd) > 0 {
		hc.CapAdd = append([]string(nil), spec.CapAdd...)
	}
	hc.SecurityOpt = []string{"no-new-privileges:true"}
	if spec.ReadOnlyRootFS {
		hc.ReadonlyRootfs = true
		hc.Tmpfs = map[string]string{"/tmp": tmpfsOptions}
	}
}
