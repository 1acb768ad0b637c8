#!/usr/bin/env bash
# No-change rebuild of the tiny example: `ruchy-image build --builder docker --tag` (inputs
# hashed, nothing compiled, image already in the engine) against a cached `docker build` of
# dockerfiles/Dockerfile, interleaved so both see the same machine. Prints each pair and the
# means.
#
#   benchmarks/no-change-rebuild.sh [RUNS]     (default 10; PRESET as in benchmarks/lib.sh)
source "$(dirname "$0")/lib.sh"
runs=${1:-10}
prepare_app tiny
ri_build >/dev/null; ri_keep
db_build >/dev/null 2>&1; db_keep   # both caches warm
ms() { local a b; a=$(date +%s%N); "$@" >/dev/null 2>&1; b=$(date +%s%N); echo $(((b - a) / 1000000)); }
echo "ruchy-image_ms docker_build_ms"
for _ in $(seq 1 "$runs"); do echo "$(ms ri_build) $(ms db_build)"; done | awk '
  { print; a += $1; b += $2 }
  END { printf "mean: ruchy-image %.1f ms, docker build %.1f ms, ratio %.2f\n", a/NR, b/NR, (a/NR)/(b/NR) }'
