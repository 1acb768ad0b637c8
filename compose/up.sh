#!/usr/bin/env bash
# `docker-compose up -d` for the dev stack, once its image is there. The image is built
# locally, never pushed: without it docker-compose would try to pull it and fail with a
# registry error that does not say what to do.
#
#   compose/up.sh [docker-compose up options]     (COMPOSE_PROJECT_NAME sets the project)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
image="${HTTP_SERVER_IMAGE:-ruchy-image-example/http-server:dev}"
if ! docker version >/dev/null 2>&1; then
  echo "error: no Docker engine answers (is dockerd running? DOCKER_HOST?)" >&2
  exit 1
fi
if ! docker image inspect "$image" >/dev/null 2>&1; then
  echo "error: image $image not found: run compose/build-images.sh first" >&2
  exit 1
fi
exec docker-compose -f "$here/docker-compose.yml" up -d "$@"
