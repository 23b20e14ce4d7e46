#!/bin/sh
# build.sh [tag] builds the RStudio stand-in image (default
# hubgate/rsession-standin:latest), FROM scratch with a static Go binary.
#
# The image is labelled hubgate.inputs.sum=<sha256 of main.go, Dockerfile
# and this script>; while an image with that tag carries the current sum
# the build is skipped, so tests can call this script every run.
set -eu

tag=${1:-hubgate/rsession-standin:latest}
dir=$(cd "$(dirname "$0")" && pwd)

if command -v sha256sum >/dev/null 2>&1; then
	sum=$(cat "$dir/main.go" "$dir/Dockerfile" "$dir/build.sh" | sha256sum | cut -d' ' -f1)
else
	sum=$(cat "$dir/main.go" "$dir/Dockerfile" "$dir/build.sh" | shasum -a 256 | cut -d' ' -f1)
fi

have=$(docker image inspect --format '{{index .Config.Labels "hubgate.inputs.sum"}}' "$tag" 2>/dev/null || true)
if [ "$have" = "$sum" ]; then
	echo "build.sh: $tag is up to date (hubgate.inputs.sum=$sum)"
	exit 0
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT INT TERM

(cd "$dir" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o "$ctx/rsession-standin" .)
cp "$dir/Dockerfile" "$ctx/Dockerfile"

old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
# The classic builder needs no buildx plugin and no registry for FROM scratch.
DOCKER_BUILDKIT=0 docker build -q --label "hubgate.inputs.sum=$sum" -t "$tag" "$ctx" >"$ctx/build.log" 2>&1 || {
	cat "$ctx/build.log" >&2
	exit 1
}
new=$(docker image inspect --format '{{.Id}}' "$tag")
if [ -n "$old" ] && [ "$old" != "$new" ]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
echo "build.sh: built $tag (hubgate.inputs.sum=$sum)"
