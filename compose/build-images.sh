#!/usr/bin/env bash
# Builds the images compose/docker-compose.yml runs, with ruchy-image (no Dockerfile): the
# example HTTP server, loaded into the engine. Its preset (aggressive), port (8080) and tag
# (ruchy-image-example/http-server:dev) are the project settings in examples/http-server.rs's
# manifest; HTTP_SERVER_IMAGE overrides the tag, and options given here win over the settings.
#
#   compose/build-images.sh [more ruchy-image build options]
#
# RUCHY_IMAGE names the ruchy-image binary to run (default: `cargo run --release --` here).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${RUCHY_IMAGE:-}" ]; then
  ruchy_image=("$RUCHY_IMAGE")
else
  ruchy_image=(cargo run --quiet --release --)
fi
tag=()
if [ -n "${HTTP_SERVER_IMAGE:-}" ]; then
  tag=(--tag "$HTTP_SERVER_IMAGE")
fi
"${ruchy_image[@]}" build examples/http-server.rs --load "${tag[@]}" "$@"
