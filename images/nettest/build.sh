#!/bin/sh
# build.sh [tag] builds the hubgate network-attack test image (default
# hubgate/nettest:latest), FROM scratch; see ../build-static.sh.
set -eu
exec "$(dirname "$0")/../build-static.sh" "$(dirname "$0")" nettest "${1:-hubgate/nettest:latest}"
