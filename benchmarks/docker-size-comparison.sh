#!/usr/bin/env bash
# CI size check (the chapter's "Check binary size" step, for every preset): builds SOURCE with
# each preset through `ruchy-image compare`, prints the Markdown table, and exits non-zero
# when a binary or a stored (compressed) image is over its budget.
#
#   benchmarks/docker-size-comparison.sh [SOURCE] [more `ruchy-image compare` options]
#
# SOURCE defaults to examples/fibonacci.rs. Environment:
#   MAX_BINARY_SIZE  budget for every binary: bytes (400000) or 400KB, 1.5MiB...  [400000]
#   MAX_IMAGE_SIZE   budget for every image as stored (gzip layers + JSON)        [400000]
#   PRESETS          the presets to build, comma-separated  [aggressive,nasa,size]
#   RUCHY_IMAGE      the ruchy-image binary to run            [cargo run --release --]
#   GITHUB_STEP_SUMMARY  set by GitHub Actions: the table is appended to it as well
# The binary budget is the chapter's CI step (fail over 400,000 bytes), on the presets that
# are shipped. It holds for static musl binaries (a builder made by `ruchy-image builder
# import-host`, or rust:1-alpine for aggressive and nasa: fibonacci is about 370 KB, size
# about 40 KB); a glibc static binary is three times bigger. PRESETS=none,balanced show the
# whole table with a looser budget.
#
# Exit: 0 within budget, 1 over budget or a preset failed to build, 2 bad input (a size that
# cannot be read, a missing source).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source="${1:-$root/examples/fibonacci.rs}"
if [ $# -gt 0 ]; then shift; fi
if [ -n "${RUCHY_IMAGE:-}" ]; then
  ruchy_image=("$RUCHY_IMAGE")
else
  ruchy_image=(cargo run --quiet --release --manifest-path "$root/Cargo.toml" --)
fi
compare=("${ruchy_image[@]}" compare "$source"
  --presets "${PRESETS:-aggressive,nasa,size}" --format markdown
  --max-binary-size "${MAX_BINARY_SIZE:-400000}" --max-image-size "${MAX_IMAGE_SIZE:-400000}" "$@")
echo "→ ${compare[*]}" >&2
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  "${compare[@]}" | tee -a "$GITHUB_STEP_SUMMARY"
else
  "${compare[@]}"
fi
