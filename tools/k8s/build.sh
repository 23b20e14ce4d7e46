#!/bin/sh
# Builds the Kubernetes test control plane (etcd, kube-apiserver,
# kube-scheduler, kwok and kwok's stage files) from the wrapper modules beside
# this script into a cache outside the checkout:
#
#   ${HUBGATE_CACHE:-$HOME/.cache/hubgate}/k8s/<k8s-version>-<inputs-hash>/bin/
#
# The hash covers every go.mod, go.sum and .go file under tools/k8s, so a
# version bump builds a new directory and a fresh clone reuses an old one.
# Only missing binaries are built; each is written to a temporary name and
# renamed, so a reader never sees half a binary. A lock serialises concurrent
# runs (two checkouts building at once share one build).
#
#   tools/k8s/build.sh                  build what is missing, print the bin dir
#   tools/k8s/build.sh --print-bin-dir  print the bin dir only (builds nothing)
#
# Cold: about 10 minutes on 2 cores (kube-apiserver alone is about 7.5).
# Warm: well under a second.
set -eu

K8S_VERSION=v1.37.2
here=$(cd "$(dirname "$0")" && pwd)

inputs_hash() {
	(cd "$here" && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) |
		LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)
}

dir="${HUBGATE_CACHE:-$HOME/.cache/hubgate}/k8s/$K8S_VERSION-$(inputs_hash)"
bin="$dir/bin"

if [ "${1:-}" = --print-bin-dir ]; then
	echo "$bin"
	exit 0
fi
if [ $# -gt 0 ]; then
	echo "usage: $0 [--print-bin-dir]" >&2
	exit 2
fi

mkdir -p "$bin"
exec 9>"$dir/.lock"
flock 9

ldflags_kube="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"

# build NAME MODULE_DIR PACKAGE LDFLAGS
build() {
	name=$1 mod=$2 pkg=$3 ldflags=$4
	if [ -x "$bin/$name" ]; then
		return 0
	fi
	echo "k8s-tools: building $name into $bin ..." >&2
	start=$(date +%s)
	(cd "$here/$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg")
	mv "$bin/$name.tmp" "$bin/$name"
	echo "k8s-tools: built $name in $(($(date +%s) - start))s" >&2
}

build etcd etcd . "-s -w"
build kube-apiserver kube-apiserver . "$ldflags_kube"
build kube-scheduler kube-scheduler . "$ldflags_kube"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "-s -w"

# kwok needs its stage files (how fake nodes and pods move through their
# lifecycle); they ship in its module.
if [ ! -d "$dir/kwok-stage" ]; then
	src=$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
	rm -rf "$dir/kwok-stage.tmp"
	mkdir -p "$dir/kwok-stage.tmp"
	for s in node/fast node/heartbeat pod/fast; do
		mkdir -p "$dir/kwok-stage.tmp/$s"
		for f in "$src/kustomize/stage/$s"/*.yaml; do
			[ "$(basename "$f")" = kustomization.yaml ] || cp "$f" "$dir/kwok-stage.tmp/$s/"
		done
	done
	chmod -R u+w "$dir/kwok-stage.tmp"
	mv "$dir/kwok-stage.tmp" "$dir/kwok-stage"
	echo "k8s-tools: copied kwok stages into $dir/kwok-stage" >&2
fi

echo "$bin"
