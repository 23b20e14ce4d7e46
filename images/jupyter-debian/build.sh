#!/bin/bash
# build.sh [tag] builds hubgate/jupyter-debian:latest (or tag), the Jupyter
# image the tests use, with no registry:
#   1. rootfs.sh debootstraps Debian 12 and imports it as
#      hubgate/jupyter-debian-base:latest (1-3 min, ~420 MB), labelled
#      hubgate.inputs.sum=<sha256 of rootfs.sh>;
#   2. a classic `docker build` (one COPY) adds the entrypoint, the
#      start script and /etc/jupyter's config,
#      labelled hubgate.inputs.sum=<sha256 of the base sum, this folder's
#      files and the entrypoint's sources>.
# Each step is skipped while its label matches, so `make images` and the
# tests can call this every run: unchanged inputs cost a second.
set -euo pipefail

tag=${1:-hubgate/jupyter-debian:latest}
base=${HUBGATE_JUPYTER_BASE:-hubgate/jupyter-debian-base:latest}
dir=$(cd "$(dirname "$0")" && pwd)
entry=$dir/../entrypoint

sha() { if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi | cut -d' ' -f1; }
label() { docker image inspect --format '{{index .Config.Labels "hubgate.inputs.sum"}}' "$1" 2>/dev/null || true; }

base_sum=$(cat "$dir/rootfs.sh" | sha)
sum=$( { echo "$base_sum"; cat "$dir/build.sh" "$dir/Dockerfile" "$dir/start-notebook" "$dir/jupyter_notebook_config.py"; \
	find "$entry" "$dir/../../spawner/contract" -maxdepth 1 -name '*.go' ! -name '*_test.go' | LC_ALL=C sort | xargs cat; } | sha)

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
size=$(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1000000}')
echo "build.sh: built $tag in $(($(date +%s) - start))s, $size (hubgate.inputs.sum=$sum)"
