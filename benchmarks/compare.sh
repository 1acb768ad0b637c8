#!/usr/bin/env bash
# Cold starts at engine speed: `ruchy-image compare examples/fibonacci.rs` with every preset
# already built, beside the same number of plain `docker run --rm` of the same images with the
# same limits (128m, 0.5 CPU), in one run; then `ruchy-image run` beside `docker run --rm`.
# Prints both times and the ratios. Goals (issue #38): compare <= 1.5x, run <= 1.3x.
#
#   RUNS       cold starts per preset (compare's --cold-start-runs)          [5]
#   RUN_TIMES  how many `run`s and `docker run`s, interleaved                 [10]
#   RI         the ruchy-image to time                  [a release build of this checkout]
#   RUCHY_IMAGE_CACHE, RUCHY_IMAGE_BUILDER as for ruchy-image itself (the defaults: the
#   user's cache, the docker builder)
#
# The images compare loads are `fibonacci:PRESET` (its tags); those that were not in the
# engine before are removed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${RI:-}" ]; then
  cargo build --release --quiet
  RI="$(realpath "${CARGO_TARGET_DIR:-target}")/release/ruchy-image"
fi
RUNS="${RUNS:-5}"
RUN_TIMES="${RUN_TIMES:-10}"
PRESETS=(none balanced aggressive nasa size)
LIMITS=(--memory 128m --cpus 0.5)

existed=()
for p in "${PRESETS[@]}"; do
  docker image inspect "fibonacci:$p" >/dev/null 2>&1 && existed+=("$p")
done
cleanup() {
  for p in "${PRESETS[@]}"; do
    [[ " ${existed[*]} " == *" $p "* ]] || docker rmi -f "fibonacci:$p" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

# Every preset built (and loaded once), so what is timed below is the cold starts.
"$RI" compare examples/fibonacci.rs -q >/dev/null

start=$(now)
"$RI" compare examples/fibonacci.rs --cold-start-runs "$RUNS" -q >/dev/null
compare_s=$(since "$start")

start=$(now)
for p in "${PRESETS[@]}"; do
  for _ in $(seq "$RUNS"); do docker run --rm "${LIMITS[@]}" "fibonacci:$p" >/dev/null; done
done
docker_s=$(since "$start")

# run and docker run, interleaved so the machine's load falls on both alike.
run_s=0
docker_run_s=0
for _ in $(seq "$RUN_TIMES"); do
  start=$(now)
  "$RI" run fibonacci:aggressive >/dev/null 2>&1
  run_s=$(echo "$run_s + $(since "$start")" | bc)
  start=$(now)
  docker run --rm "${LIMITS[@]}" fibonacci:aggressive >/dev/null
  docker_run_s=$(echo "$docker_run_s + $(since "$start")" | bc)
done

n=$((${#PRESETS[@]} * RUNS))
printf 'compare, %d presets x %d cold starts   %6.2f s\n' "${#PRESETS[@]}" "$RUNS" "$compare_s"
printf '%d x docker run --rm (same limits)      %6.2f s\n' "$n" "$docker_s"
printf 'ratio                                     %5.2fx (goal <= 1.5x)\n' "$(echo "$compare_s / $docker_s" | bc -l)"
printf 'ruchy-image run, mean of %d               %6.3f s\n' "$RUN_TIMES" "$(echo "$run_s / $RUN_TIMES" | bc -l)"
printf 'docker run --rm, mean of %d               %6.3f s\n' "$RUN_TIMES" "$(echo "$docker_run_s / $RUN_TIMES" | bc -l)"
printf 'ratio                                     %5.2fx (goal <= 1.3x)\n' "$(echo "$run_s / $docker_run_s" | bc -l)"
