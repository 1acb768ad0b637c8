#!/usr/bin/env bash
# Builds the image compose/service.yml runs: this checkout's ruchy-image binary on the
# builder image (which has the glibc it links and the toolchain `--builder local` would use),
# tagged ruchy-image-service:dev (RUCHY_IMAGE_SERVICE_IMAGE overrides the tag, BASE the base).
#
#   compose/build-service-image.sh
#
# RUCHY_IMAGE names the binary to put in (default: `cargo build --release`'s).
set -euo pipefail
cd "$(dirname "$0")/.."
image="${RUCHY_IMAGE_SERVICE_IMAGE:-ruchy-image-service:dev}"
if [ -n "${RUCHY_IMAGE:-}" ]; then
  binary="$RUCHY_IMAGE"
else
  cargo build --quiet --release --locked
  binary=target/release/ruchy-image
fi
# The base: the newest image `ruchy-image builder import-host` made under its own name (others
# with its label may be derived from it), else any tagged one.
builders=$(docker images --filter label=dev.ruchy.image.builder.fingerprint --format '{{.Repository}}:{{.Tag}}' | grep -v '<none>' || true)
base="${BASE:-$(printf '%s\n' "$builders" | grep '^ruchy-image-builder:' | head -n 1)}"
base="${base:-$(printf '%s\n' "$builders" | head -n 1)}"
if [ -z "$base" ]; then
  echo "no builder image: run \`ruchy-image builder import-host\` first, or set BASE" >&2
  exit 2
fi
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/ruchy-image"
cat > "$context/Dockerfile" <<DOCKERFILE
FROM $base
COPY ruchy-image /usr/local/bin/ruchy-image
ENTRYPOINT ["/usr/local/bin/ruchy-image"]
CMD ["serve", "--listen=0.0.0.0:7878", "--data-dir=/var/lib/ruchy-image"]
DOCKERFILE
# The classic builder: the engine here has no BuildKit client plugin.
DOCKER_BUILDKIT=0 docker build --quiet --tag "$image" "$context" >/dev/null 2>&1 \
  || DOCKER_BUILDKIT=0 docker build --tag "$image" "$context"
echo "built $image (on $base)"
