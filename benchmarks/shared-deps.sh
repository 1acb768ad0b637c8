#!/usr/bin/env bash
# Cold build of a team's second project, whose dependencies match a project built before:
# report-app (benchmarks/apps/report-app: clap, serde, regex... at deps-app's versions), and a
# one-line edit of it after, each built
#   - in an empty target volume of its own (nothing shared);
#   - after deps-app, sharing its compiled dependencies (what every build does);
#   - by `docker build -f dockerfiles/Dockerfile`, same builder image and preset.
# With BEFORE=PATH (another ruchy-image binary, e.g. one built from an earlier commit), the two
# ruchy-image rows run with it too, side by side in the same run: isolated builds (fetch with a
# network, dependencies compiled from a stand-in into the shared volume, the project offline in
# a target of its own) against one shared writable target.
# Same machine, one run, same builder image (`builder import-host`), preset aggressive.
#
#   benchmarks/shared-deps.sh                         # PRESET, DOCKERFILE: see benchmarks/lib.sh
#   BEFORE=/tmp/before/ruchy-image benchmarks/shared-deps.sh
#
# Prints a markdown table of wall seconds and the ratios. The run's target volumes
# (ruchy-image-bench-PID-*) and images are removed at the end.
source "$(dirname "$0")/lib.sh"

ratio() { echo "$1 $2" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "-" }'; }

# One binary's four builds, in $alone $first $shared $edited (wall seconds). Its own volumes
# (the prefix $1): the two binaries never see each other's.
measure() {
  local prefix=$1
  TARGET_VOLUME="$prefix-alone" prepare_app report-app
  alone=$(seconds ri_build); ri_keep
  TARGET_VOLUME="$prefix-shared" prepare_app deps
  first=$(seconds ri_build); ri_keep
  TARGET_VOLUME="$prefix-shared" prepare_app report-app
  shared=$(seconds ri_build); ri_keep
  edit
  edited=$(seconds ri_build); ri_keep
}

rows=()
row() { rows+=("$(printf '| %s | %.2f s | %.2f s | %.2f s | %.2f s | %s |' "$1" "$2" "$3" "$4" "$5" "$(ratio "$4" "$2")")"); }

if [ -n "${BEFORE:-}" ]; then
  after=$RI
  RI=$(realpath "$BEFORE")
  measure before
  row "ruchy-image before ($BEFORE)" "$alone" "$first" "$shared" "$edited"
  RI=$after
fi
measure after
row "ruchy-image (this tree)" "$alone" "$first" "$shared" "$edited"

# docker build of the same copy of report-app.
docker_cold=$(seconds db_build); db_keep
edit
docker_edit=$(seconds db_build); db_keep

echo "| preset $PRESET | report-app alone (cold) | deps-app first | report-app after it | one-line edit | after / alone |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
printf '| docker build -f %s | %.2f s | - | - | %.2f s | - |\n' "${DOCKERFILE#"$PWD/"}" "$docker_cold" "$docker_edit"
