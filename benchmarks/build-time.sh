#!/usr/bin/env bash
# Build time, image size and layers: `ruchy-image build --builder docker` against `docker build`
# of the equivalent multi-stage Dockerfile (dockerfiles/Dockerfile), with the same builder image
# (`builder import-host`: this machine's toolchain), the same app and preset, on the same
# machine, one run each: cold build, no-change rebuild, one-line-change rebuild.
#
#   benchmarks/build-time.sh                 # both apps: fibonacci (tiny) and deps-app (~47 crates)
#   APPS=tiny benchmarks/build-time.sh       # PRESET, DOCKERFILE, APPS: see benchmarks/lib.sh
#
# Prints a markdown table; ratios are ruchy-image / docker build (below 1: ruchy-image is faster
# or smaller). Sizes are the engine's (`docker image inspect` .Size: unpacked bytes).
source "$(dirname "$0")/lib.sh"

ratio() { echo "$1 $2" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "-" }'; }

echo "| app | build | cold | no-change rebuild | one-line-change rebuild | image size | layers |"
echo "|---|---|---|---|---|---|---|"
for app in $APPS; do
  prepare_app "$app"
  time_three ri
  ri=("$cold" "$same" "$change" "$(image_size "$(tag ri)")" "$(image_layers "$(tag ri)")")
  time_three db
  db=("$cold" "$same" "$change" "$(image_size "$(tag db)")" "$(image_layers "$(tag db)")")
  printf '| %s | ruchy-image build --builder docker | %.2f s | %.2f s | %.2f s | %s B | %s |\n' \
    "$app" "${ri[@]}"
  printf '| %s | docker build -f %s | %.2f s | %.2f s | %.2f s | %s B | %s |\n' \
    "$app" "${DOCKERFILE#"$PWD/"}" "${db[@]}"
  printf '| %s | ratio ruchy-image / docker build | %s | %s | %s | %s | %s |\n' "$app" \
    "$(ratio "${ri[0]}" "${db[0]}")" "$(ratio "${ri[1]}" "${db[1]}")" \
    "$(ratio "${ri[2]}" "${db[2]}")" "$(ratio "${ri[3]}" "${db[3]}")" \
    "$(ratio "${ri[4]}" "${db[4]}")"
done
