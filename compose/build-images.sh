#!/usr/bin/env bash
# Builds the images compose/docker-compose.yml runs, with ruchy-image (no Dockerfile): the
# example HTTP server, aggressive preset, port 8080, loaded into the engine as
# ruchy-image-example/http-server:dev (HTTP_SERVER_IMAGE overrides the tag).
#
#   compose/build-images.sh [more ruchy-image build options]
#
# RUCHY_IMAGE names the ruchy-image binary to run (default: `cargo run --release --` here).
set -euo pipefail
cd "$(dirname "$0")/.."
image="${HTTP_SERVER_IMAGE:-ruchy-image-example/http-server:dev}"
if [ -n "${RUCHY_IMAGE:-}" ]; then
  ruchy_image=("$RUCHY_IMAGE")
else
  ruchy_image=(cargo run --quiet --release --)
fi
"${ruchy_image[@]}" build examples/http-server.rs --optimize aggressive --port 8080 \
  --tag "$image" --load "$@"
