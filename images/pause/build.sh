#!/bin/sh
# build.sh [tag] builds the test node's pause (sandbox) image (default
# hubgate/pause:latest), FROM scratch; see ../build-static.sh.
set -eu
exec "$(dirname "$0")/../build-static.sh" "$(dirname "$0")" pause "${1:-hubgate/pause:latest}"
