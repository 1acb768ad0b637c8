#!/usr/bin/env bash
# CI size check (the chapter's "Check binary size" step, for every preset): builds SOURCE with
# each preset through `ruchy-image compare`, prints the Markdown table, and exits non-zero
# when a binary or a stored (compressed) image is over its budget.
#
#   benchmarks/docker-size-comparison.sh [SOURCE] [more `ruchy-image compare` options]
#
# SOURCE defaults to examples/fibonacci.rs. Environment:
#   MAX_BINARY_SIZE  budget for every binary: bytes (400000) or 400KB, 1.5MiB...  [8MB]
#   MAX_IMAGE_SIZE   budget for every image as stored (gzip layers + JSON)        [3MB]
#   PRESETS          the presets to build, comma-separated  [none,balanced,aggressive,nasa]
#   RUCHY_IMAGE      the ruchy-image binary to run            [cargo run --release --]
#   GITHUB_STEP_SUMMARY  set by GitHub Actions: the table is appended to it as well
# The default budgets pass today with room to spare (none, the biggest, is 5.2 MiB and 1.5 MiB
# stored with the Debian toolchain); tighten them for the presets you ship, e.g. the chapter's
# PRESETS=nasa MAX_BINARY_SIZE=400000.
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
  --presets "${PRESETS:-none,balanced,aggressive,nasa}" --format markdown
  --max-binary-size "${MAX_BINARY_SIZE:-8MB}" --max-image-size "${MAX_IMAGE_SIZE:-3MB}" "$@")
echo "→ ${compare[*]}" >&2
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  "${compare[@]}" | tee -a "$GITHUB_STEP_SUMMARY"
else
  "${compare[@]}"
fi
