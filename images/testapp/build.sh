#!/bin/sh
# build.sh [tag] builds the hubgate test image (default hubgate/testapp:latest).
#
# The image is labelled hubgate.testapp.sum=<sha256 of main.go + Dockerfile>;
# when an image with that tag already carries the current sum the build is
# skipped, so tests can call this script every run.
set -eu

tag=${1:-hubgate/testapp:latest}
dir=$(cd "$(dirname "$0")" && pwd)

if command -v sha256sum >/dev/null 2>&1; then
	sum=$(cat "$dir/main.go" "$dir/Dockerfile" | sha256sum | cut -d' ' -f1)
else
	sum=$(cat "$dir/main.go" "$dir/Dockerfile" | shasum -a 256 | cut -d' ' -f1)
fi

have=$(docker image inspect --format '{{index .Config.Labels "hubgate.testapp.sum"}}' "$tag" 2>/dev/null || true)
if [ "$have" = "$sum" ]; then
	echo "build.sh: $tag is up to date (hubgate.testapp.sum=$sum)"
	exit 0
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT INT TERM

(cd "$dir" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o "$ctx/testapp" .)
cp "$dir/Dockerfile" "$ctx/Dockerfile"

# The classic builder needs no buildx plugin and no registry for FROM scratch.
DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build -q \
	--label "hubgate.testapp.sum=$sum" \
	-t "$tag" "$ctx"
echo "build.sh: built $tag (hubgate.testapp.sum=$sum)"
