#!/usr/bin/env bash
# Cold build of a team's second project, whose dependencies match a project built before:
# report-app (benchmarks/apps/report-app: clap, serde, regex... at deps-app's versions) built
#   - as before shared targets: cold, in an empty target volume of its own;
#   - with sharing: after deps-app, in the same target volume (what every build does now);
#   - by `docker build -f dockerfiles/Dockerfile`, same builder image and preset.
# Same machine, one run, same builder image (`builder import-host`), preset aggressive.
#
#   benchmarks/shared-deps.sh               # PRESET, DOCKERFILE: see benchmarks/lib.sh
#
# Prints a markdown table of wall seconds and the ratios. The run's target volumes
# (ruchy-image-bench-PID-*) and images are removed at the end.
source "$(dirname "$0")/lib.sh"

ratio() { echo "$1 $2" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "-" }'; }

# Today's behaviour: a target volume of its own, empty.
TARGET_VOLUME=alone prepare_app report-app
alone=$(seconds ri_build); ri_keep

# Sharing: deps-app first (untimed for the ratio, shown), then a fresh copy of report-app
# (new content, so the artifact cache misses and cargo runs).
TARGET_VOLUME=shared prepare_app deps
first=$(seconds ri_build); ri_keep
TARGET_VOLUME=shared prepare_app report-app
shared=$(seconds ri_build); ri_keep

# docker build of the same copy of report-app.
docker_cold=$(seconds db_build); db_keep

echo "| build of report-app (cold, preset $PRESET) | wall time | sharing / this |"
echo "|---|---|---|"
printf '| ruchy-image, own empty target volume (before sharing) | %.2f s | %s |\n' "$alone" "$(ratio "$shared" "$alone")"
printf '| docker build -f %s | %.2f s | %s |\n' "${DOCKERFILE#"$PWD/"}" "$docker_cold" "$(ratio "$shared" "$docker_cold")"
printf '| ruchy-image, target volume shared with deps-app (built first: %.2f s) | %.2f s | 1.00 |\n' "$first" "$shared"
