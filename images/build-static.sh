#!/bin/sh
# build-static.sh DIR BINARY TAG builds a FROM-scratch image of the Go
# program in DIR: the static binary (CGO_ENABLED=0) is compiled into a
# temporary build context next to DIR/Dockerfile, which copies BINARY.
#
# The context also holds an empty folder, empty/, for a Dockerfile that
# needs an empty directory with an owner (COPY --chown=1000:1000 empty/
# /home/x/): Docker gives a new named volume mounted there the same owner.
#
# The image is labelled hubgate.inputs.sum=<sha256 of DIR's Go files, its
# Dockerfile, go.sum and this script>; while the image tagged TAG carries
# the current sum the build is skipped, so tests can call it every run.
# The classic builder needs no buildx plugin and no registry for FROM
# scratch.
set -eu

dir=$(cd "$1" && pwd)
bin=$2
tag=$3
here=$(cd "$(dirname "$0")" && pwd)

sha() { if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi | cut -d' ' -f1; }
sum=$(cat "$dir"/*.go "$dir/Dockerfile" "$here/../go.sum" "$here/build-static.sh" | sha)

have=$(docker image inspect --format '{{index .Config.Labels "hubgate.inputs.sum"}}' "$tag" 2>/dev/null || true)
if [ "$have" = "$sum" ]; then
	echo "build-static.sh: $tag is up to date (hubgate.inputs.sum=$sum)"
	exit 0
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT INT TERM

(cd "$dir" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o "$ctx/$bin" .)
cp "$dir/Dockerfile" "$ctx/Dockerfile"
mkdir "$ctx/empty"

old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
DOCKER_BUILDKIT=0 docker build -q --label "hubgate.inputs.sum=$sum" -t "$tag" "$ctx" >"$ctx/build.log" 2>&1 || {
	cat "$ctx/build.log" >&2
	exit 1
}
new=$(docker image inspect --format '{{.Id}}' "$tag")
if [ -n "$old" ] && [ "$old" != "$new" ]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
echo "build-static.sh: built $tag (hubgate.inputs.sum=$sum)"
