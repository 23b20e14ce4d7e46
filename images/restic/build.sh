#!/bin/sh
# build.sh [tag] builds hubgate's backup helper image (default
# hubgate/restic:latest) FROM scratch, with no registry: Debian's
# /usr/bin/restic (apt-get install restic; 0.14 is dynamically linked),
# the shared objects ldd names for it, an empty /tmp, and the static Go
# program backup-helper (main.go). Skipped while the image carries the
# sum of its inputs (label hubgate.inputs.sum), as images/build-static.sh
# does.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tag=${1:-hubgate/restic:latest}
restic=$(command -v restic || true)
if [ -z "$restic" ]; then
	echo "build.sh: restic is not installed (apt-get install restic)" >&2
	exit 1
fi
restic=$(readlink -f "$restic")
libs=$(ldd "$restic" 2>/dev/null | awk '/=>/ {print $3} /^[[:space:]]*\/lib/ {print $1}' | sort -u)

sha() { sha256sum | cut -d' ' -f1; }
sum=$( (cat "$here/main.go" "$here/Dockerfile" "$here/build.sh" "$here/../../go.sum" "$restic"; for l in $libs; do cat "$l"; done) | sha)
have=$(docker image inspect --format '{{index .Config.Labels "hubgate.inputs.sum"}}' "$tag" 2>/dev/null || true)
if [ "$have" = "$sum" ]; then
	echo "build.sh: $tag is up to date (hubgate.inputs.sum=$sum)"
	exit 0
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT INT TERM
mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/tmp"
cp "$restic" "$ctx/rootfs/usr/bin/restic"
for l in $libs; do
	mkdir -p "$ctx/rootfs$(dirname "$l")"
	cp -L "$l" "$ctx/rootfs$l"
done
(cd "$here" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o "$ctx/backup-helper" .)
cp "$here/Dockerfile" "$ctx/Dockerfile"

old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
DOCKER_BUILDKIT=0 docker build -q --label "hubgate.inputs.sum=$sum" -t "$tag" "$ctx" >"$ctx/build.log" 2>&1 || {
	cat "$ctx/build.log" >&2
	exit 1
}
new=$(docker image inspect --format '{{.Id}}' "$tag")
if [ -n "$old" ] && [ "$old" != "$new" ]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
echo "build.sh: built $tag (hubgate.inputs.sum=$sum)"
