#!/bin/bash
# build.sh [tag] builds hubgate/jupyter-debian:latest (or tag), the Jupyter
# image of `make run` and the tests (Python 3 and R kernels), with no
# registry:
#   1. rootfs.sh debootstraps Debian 12 and imports it as
#      hubgate/jupyter-debian-base:<first 12 hex of its sum> (5-10 min
#      on 2 cores, most of it debootstrap and apt-get; ~510 MB), labelled
#      hubgate.inputs.sum=<sha256 of rootfs.sh>. The tag names the inputs,
#      so checkouts with different rootfs.sh files keep their own base
#      instead of rebuilding each other's;
#   2. a classic `docker build` (one COPY) adds the entrypoint, the
#      start script and /etc/jupyter's config,
#      labelled hubgate.inputs.sum=<sha256 of the base sum, this folder's
#      files and the entrypoint's sources>.
# Each step is skipped while its label matches, so `make images` and the
# tests can call this every run: unchanged inputs cost a second. Step 1
# needs root (see rootfs.sh); step 2 does not.
#
# build.sh --status [tag] builds nothing and prints one word: "current"
# (nothing to do), "layer" (only step 2, seconds, no root) or "rootfs"
# (step 1 too).
set -euo pipefail

status=
if [ "${1:-}" = --status ]; then
	status=1
	shift
fi
tag=${1:-hubgate/jupyter-debian:latest}
dir=$(cd "$(dirname "$0")" && pwd)
entry=$dir/../entrypoint

sha() { if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi | cut -d' ' -f1; }
label() { docker image inspect --format '{{index .Config.Labels "hubgate.inputs.sum"}}' "$1" 2>/dev/null || true; }

base_sum=$(cat "$dir/rootfs.sh" | sha)
base=${HUBGATE_JUPYTER_BASE:-hubgate/jupyter-debian-base:${base_sum:0:12}}
sum=$( { echo "$base_sum"; cat "$dir/build.sh" "$dir/Dockerfile" "$dir/start-notebook" "$dir/jupyter_notebook_config.py"; \
	find "$entry" "$dir/../../spawner/contract" -maxdepth 1 -name '*.go' ! -name '*_test.go' | LC_ALL=C sort | xargs cat; } | sha)

if [ -n "$status" ]; then
	if [ "$(label "$tag")" = "$sum" ]; then
		echo current
	elif [ "$(label "$base")" = "$base_sum" ]; then
		echo layer
	else
		echo rootfs
	fi
	exit 0
fi
if [ "$(label "$tag")" = "$sum" ]; then
	echo "build.sh: $tag is up to date (hubgate.inputs.sum=$sum)"
	exit 0
fi

# One build at a time on this engine; a second caller waits, then finds
# the image up to date.
exec 9>"${TMPDIR:-/tmp}/hubgate-jupyter-debian.lock"
flock 9
if [ "$(label "$tag")" = "$sum" ]; then
	echo "build.sh: $tag is up to date (hubgate.inputs.sum=$sum)"
	exit 0
fi

start=$(date +%s)
if [ "$(label "$base")" != "$base_sum" ]; then
	old=$(docker image inspect --format '{{.Id}}' "$base" 2>/dev/null || true)
	"$dir/rootfs.sh" "$base" "$base_sum"
	if [ -n "$old" ]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
umask 022
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc/jupyter"
"$entry/build.sh" "$ctx/rootfs/usr/local/bin/hubgate-entrypoint"
install -m 0755 "$dir/start-notebook" "$ctx/rootfs/usr/local/bin/hubgate-start-notebook"
install -m 0644 "$dir/jupyter_notebook_config.py" "$ctx/rootfs/etc/jupyter/jupyter_notebook_config.py"
cp "$dir/Dockerfile" "$ctx/"
old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$base" \
	--label "hubgate.inputs.sum=$sum" -t "$tag" "$ctx" >"$ctx/build.log" 2>&1 || {
	cat "$ctx/build.log" >&2
	exit 1
}
new=$(docker image inspect --format '{{.Id}}' "$tag")
if [ -n "$old" ] && [ "$old" != "$new" ]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
# Older bases of this scheme (hubgate/jupyter-debian-base:<12 hex>) go
# once nothing uses them: `docker image rm` refuses while a container or a
# child image still does. Other tags (say :latest) are left alone.
for ref in $(docker image ls --format '{{.Repository}}:{{.Tag}}' "${base%:*}"); do
	if [ "$ref" != "$base" ] && [[ ${ref##*:} =~ ^[0-9a-f]{12}$ ]]; then
		docker image rm "$ref" >/dev/null 2>&1 || true
	fi
done
size=$(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1000000}')
echo "build.sh: built $tag in $(($(date +%s) - start))s, $size (hubgate.inputs.sum=$sum)"
