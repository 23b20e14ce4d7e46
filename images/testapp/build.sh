#!/bin/sh
# build.sh [tag] builds the hubgate test image (default
# hubgate/testapp:latest), FROM scratch; see ../build-static.sh.
set -eu
exec "$(dirname "$0")/../build-static.sh" "$(dirname "$0")" testapp "${1:-hubgate/testapp:latest}"
