#!/bin/sh
# build-node.sh [bin|gen] builds the node binaries (kubelet and
# kube-controller-manager, upstream k8s.io/kubernetes at $K8S_VERSION) from
# the wrapper modules next to this script, into
#   $HOME/.cache/hubgate/k8s-node/<version>-<hash>/bin/
# where <hash> covers the wrapper modules' go.mod, go.sum and main.go and this
# script, and prints that bin directory as its last line. A binary already
# there is reused (a warm run costs nothing).
#
# `build-node.sh gen` rewrites the wrapper modules' go.mod for $K8S_VERSION
# (k8s.io/kubernetes required, every staging module replaced by its
# published v0.X) and runs go mod tidy; commit the result.
#
# Builds are CGO_ENABLED=0 static binaries; the first build of both takes
# ~10 min on 2 cores (module download + compile), see tools/k8s/NODE.md.
set -eu

K8S_VERSION=${K8S_VERSION:-v1.37.2}
here=$(cd "$(dirname "$0")" && pwd)
mods="kubelet kube-controller-manager"

gen() {
	staging_version="v0.${K8S_VERSION#v1.}"
	for m in $mods; do
		{
			printf 'module hubgate.local/tools/k8s/%s\n\ngo 1.26.0\n\ngodebug default=go1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$m" "$K8S_VERSION"
			for s in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
				cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api \
				cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt \
				kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics \
				mount-utils pod-security-admission sample-apiserver streaming; do
				printf '\tk8s.io/%s => k8s.io/%s %s\n' "$s" "$s" "$staging_version"
			done
			printf ')\n'
		} >"$here/$m/go.mod"
		rm -f "$here/$m/go.sum"
		(cd "$here/$m" && go mod tidy)
	done
}

if [ "${1:-bin}" = gen ]; then
	gen
	exit 0
fi

sha() { sha256sum | cut -c1-12; }
hash=$(for m in $mods; do cat "$here/$m/go.mod" "$here/$m/go.sum" "$here/$m/main.go"; done | cat - "$here/build-node.sh" | sha)
out="${HUBGATE_CACHE:-$HOME/.cache/hubgate}/k8s-node/$K8S_VERSION-$hash/bin"
mkdir -p "$out"

minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
for m in $mods; do
	if [ -x "$out/$m" ] && "$out/$m" --version 2>/dev/null | grep -q "Kubernetes $K8S_VERSION\$"; then
		echo "build-node.sh: $out/$m is up to date" >&2
		continue
	fi
	echo "build-node.sh: building $m $K8S_VERSION (several minutes on 2 cores)" >&2
	start=$(date +%s)
	(cd "$here/$m" && CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
		-o "$out/$m.tmp" .)
	mv "$out/$m.tmp" "$out/$m"
	echo "build-node.sh: built $m in $(($(date +%s) - start)) s" >&2
done
echo "$out"
