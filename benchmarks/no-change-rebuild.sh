#!/usr/bin/env bash
# No-change rebuild of the tiny example: `ruchy-image build --builder docker --tag` (inputs
# hashed, nothing compiled, image already in the engine) against a cached `docker build` of
# the equivalent Dockerfile, interleaved so both see the same machine. Prints each pair and
# the means.
#
#   benchmarks/no-change-rebuild.sh [RUNS]     (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
cargo build --release --quiet
RI="$PWD/target/release/ruchy-image"
BUILDER=$("$RI" builder import-host --json | sed -n 's/.*"tag": "\(.*\)".*/\1/p')
work=$(mktemp -d)
trap 'docker rmi -f bench/nc:ri bench/nc:db >/dev/null 2>&1; rm -rf "$work"' EXIT
export RUCHY_IMAGE_CACHE="$work/cache"
mkdir -p "$work/app/src"
cp examples/fibonacci.rs "$work/app/src/main.rs"
printf '[package]\nname = "tiny"\nversion = "0.1.0"\nedition = "2021"\n[workspace]\n' > "$work/app/Cargo.toml"
cp benchmarks/Dockerfile.rebuild "$work/app/Dockerfile"
printf 'target\nDockerfile\n.dockerignore\n' > "$work/app/.dockerignore"

ri() { "$RI" build "$work/app" -O aggressive --builder docker --builder-image "$BUILDER" --tag bench/nc:ri -q; }
db() { docker build -q --build-arg BUILDER_IMAGE="$BUILDER" --build-arg BIN=tiny -t bench/nc:db "$work/app" >/dev/null 2>&1; }
ri; db   # warm both caches
ms() { local a b; a=$(date +%s%N); "$@"; b=$(date +%s%N); echo $(((b - a) / 1000000)); }
echo "ruchy-image_ms docker_build_ms"
for _ in $(seq 1 "$runs"); do echo "$(ms ri) $(ms db)"; done | awk '
  { print; a += $1; b += $2 }
  END { printf "mean: ruchy-image %.1f ms, docker build %.1f ms, ratio %.2f\n", a/NR, b/NR, (a/NR)/(b/NR) }'
