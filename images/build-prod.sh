#!/bin/bash
# build-prod.sh [jupyterlab] [rstudio]: builds the production user images
# hubgate/jupyterlab:latest and hubgate/rstudio:latest (both by default).
# `make images-prod` runs it. Each build context is the image's folder plus
# the shared hubgate-entrypoint (compiled here, static) and jupyter-server/
# (start script, config). The bases come from quay.io and RStudio from
# download2.rstudio.org: this needs a registry and the Internet. Where the
# base cannot be pulled it stops with a message saying so.
#
# Environment: HUBGATE_IMAGE_PREFIX (default hubgate/), HUBGATE_IMAGE_TAG
# (default latest), DOCKER_BUILD_ARGS (extra `docker build` arguments, e.g.
# "--build-arg RSTUDIO_SHA256=...").
set -euo pipefail

dir=$(cd "$(dirname "$0")" && pwd)
prefix=${HUBGATE_IMAGE_PREFIX:-hubgate/}
tag=${HUBGATE_IMAGE_TAG:-latest}
images=("$@")
if [ ${#images[@]} -eq 0 ]; then images=(jupyterlab rstudio); fi
# Without the buildx plugin, use the classic builder.
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi

ctx_root=$(mktemp -d)
trap 'rm -rf "$ctx_root"' EXIT
"$dir/entrypoint/build.sh" "$ctx_root/hubgate-entrypoint"

for name in "${images[@]}"; do
	if [ ! -f "$dir/$name/Dockerfile" ]; then
		echo "build-prod.sh: no image $name (images/$name/Dockerfile)" >&2
		exit 2
	fi
	base=$(sed -n 's/^ARG BASE=//p' "$dir/$name/Dockerfile" | head -n1)
	if ! docker image inspect "$base" >/dev/null 2>&1; then
		echo "build-prod.sh: pulling $base"
		if ! timeout 600 docker pull "$base"; then
			cat >&2 <<MSG

build-prod.sh: cannot pull $base, the base of ${prefix}${name}:${tag}.
The production images (JupyterLab, RStudio) are built from Jupyter's
docker-stacks images on quay.io and need a registry (and, for RStudio,
download2.rstudio.org). Run \`make images-prod\` on a machine that reaches
them, or load the base first (docker load). The tests do not need these
images: \`make images\` builds hubgate/jupyter-debian without a registry.
MSG
			exit 1
		fi
	fi
	ctx=$ctx_root/$name
	mkdir -p "$ctx"
	cp -R "$dir/$name/." "$ctx/"
	install -m 0755 "$ctx_root/hubgate-entrypoint" "$ctx/hubgate-entrypoint"
	install -m 0755 "$dir/jupyter-server/start-jupyter" "$ctx/hubgate-start-jupyter"
	install -m 0644 "$dir/jupyter-server/jupyter_server_config.py" "$ctx/jupyter_server_config.py"
	echo "build-prod.sh: building ${prefix}${name}:${tag} from $base"
	# shellcheck disable=SC2086
	docker build ${DOCKER_BUILD_ARGS:-} -t "${prefix}${name}:${tag}" "$ctx"
done
