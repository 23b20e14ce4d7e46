#!/bin/sh
# build.sh OUT: compiles hubgate-entrypoint as a static Linux binary at OUT.
# The image build scripts call it; it needs only Go.
set -eu
out=${1:?usage: build.sh OUT}
dir=$(cd "$(dirname "$0")" && pwd)
cd "$dir"
CGO_ENABLED=0 GOOS=linux GOARCH=${GOARCH:-$(go env GOARCH)} go build -trimpath -ldflags='-s -w' -o "$out" .
