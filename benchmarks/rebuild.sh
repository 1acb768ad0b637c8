#!/usr/bin/env bash
# Rebuild times through the builder container, side by side with `docker build` of the
# multi-stage dockerfiles/Dockerfile (same builder image, same preset) and host cargo with a
# kept target dir; then cold start of our image vs the `docker build` one. One run, one machine.
#
#   benchmarks/rebuild.sh            (needs an engine; makes the builder image if missing)
#
# PRESET, DOCKERFILE and APPS as in benchmarks/lib.sh. Prints a markdown table. Times are wall
# seconds of the whole command. benchmarks/build-time.sh adds image size and layers, and ratios.
source "$(dirname "$0")/lib.sh"

row() { printf '| %s | %s | %.2f s | %.2f s | %.2f s |\n' "$@"; }

echo "| app | builder | cold | no-change rebuild | one-line-change rebuild |"
echo "|---|---|---|---|---|"
for app in $APPS; do
  prepare_app "$app"
  time_three ri
  row "$app" "ruchy-image (docker builder)" "$cold" "$same" "$change"
  time_three db
  row "$app" "docker build (multi-stage)" "$cold" "$same" "$change"

  local_build() { "$RI" build "$dir" -O "$PRESET" --builder local --no-load -q; }
  local_keep() { :; }
  time_three local
  row "$app" "ruchy-image (host cargo)" "$cold" "$same" "$change"
done

case " $APPS " in *" tiny "*) ;; *) exit 0 ;; esac
echo
echo "| image | cold start median (20 runs) | min | max |"
echo "|---|---|---|---|"
app=tiny
for image in "$(tag ri)" "$(tag db)"; do
  if ! json=$("$RI" run "$image" -n 20 --json -- 20 2>"$work/run.err"); then
    echo "| $image | failed: $(tail -1 "$work/run.err") |"
    continue
  fi
  echo "$json" | sed -n 's/.*"cold_start_\(median\|min\|max\)_ms": \([0-9.]*\).*/\2/p' | tr '\n' ' ' \
    | awk -v i="$image" '{ printf "| %s | %.1f ms | %.1f ms | %.1f ms |\n", i, $1, $2, $3 }'
done
