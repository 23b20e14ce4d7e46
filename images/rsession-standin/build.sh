#!/bin/sh
# build.sh [tag] builds the RStudio stand-in image (default
# hubgate/rsession-standin:latest), FROM scratch; see ../build-static.sh.
set -eu
exec "$(dirname "$0")/../build-static.sh" "$(dirname "$0")" rsession-standin "${1:-hubgate/rsession-standin:latest}"
