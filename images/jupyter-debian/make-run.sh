#!/bin/bash
# make-run.sh [tag]: what `make run` does about the Jupyter image (default
# hubgate/jupyter-debian:latest). Exits 0 when the image is ready to offer,
# after reusing it, adding its quick top layer, or building it the first
# time; exits 1, having said why, when `make run` should serve the test app
# only: not root (debootstrap and chroot need it), no debootstrap and no
# apt-get to install it, a failed build, or HUBGATE_RUN_NOTEBOOK=off.
set -uo pipefail

tag=${1:-hubgate/jupyter-debian:latest}
dir=$(cd "$(dirname "$0")" && pwd)
say() { printf 'make run: %s\n' "$*"; }
without() {
	say "not offering the Jupyter notebook: $*"
	say "serving the test app only."
	exit 1
}

if [ "${HUBGATE_RUN_NOTEBOOK:-on}" = off ]; then
	without "HUBGATE_RUN_NOTEBOOK=off."
fi
if ! docker version >/dev/null 2>&1; then
	without "the Docker engine is not reachable."
fi
state=$("$dir/build.sh" --status "$tag") || without "cannot ask the Docker engine about $tag."
case $state in
current)
	say "reusing $tag (Jupyter Notebook with Python 3 and R)."
	exit 0
	;;
layer)
	say "updating the top layer of $tag (seconds)."
	;;
rootfs)
	if [ "$(id -u)" != 0 ]; then
		without "$tag is not built yet, and building it needs root (debootstrap and chroot make its Debian 12 file system). Run \`make images\` or \`make run\` once as root; later runs as any user reuse the image."
	fi
	if ! command -v debootstrap >/dev/null && ! command -v apt-get >/dev/null; then
		without "$tag is not built yet, and building it needs Debian's debootstrap, which is not installed (and there is no apt-get to install it)."
	fi
	say "building the Jupyter image $tag the first time: about 5-10 minutes on 2 cores,"
	say "because it is made here without a registry: debootstrap of a minimal Debian 12, then apt-get"
	say "of Jupyter Notebook, Python 3, R and IRkernel from the Debian mirror (~510 MB image)."
	say "Later runs reuse it; set HUBGATE_RUN_NOTEBOOK=off to skip it."
	;;
*)
	without "build.sh --status said \"$state\"."
	;;
esac
start=$(date +%s)
if ! "$dir/build.sh" "$tag"; then
	without "building $tag failed (its output is above)."
fi
say "$tag is ready ($(($(date +%s) - start))s)."
