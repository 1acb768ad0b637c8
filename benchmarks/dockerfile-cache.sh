#!/usr/bin/env bash
# The generated Dockerfile's caching, side by side in one run (deps-app by default): cold
# build, no-change rebuild and one-line-change rebuild through
#   - `ruchy-image build --builder docker`,
#   - `docker build` of the Dockerfile before it cached (commit $BEFORE: COPY . . and one
#     cargo build), classic builder,
#   - `docker build` of dockerfiles/Dockerfile (dependency layer), classic builder,
#   - `DOCKER_BUILDKIT=1 /usr/bin/docker build` of dockerfiles/Dockerfile.buildkit (cache
#     mounts of this run's own, so its cold build is cold).
#
#   bash benchmarks/dockerfile-cache.sh                  # APPS=deps; PRESET etc.: benchmarks/lib.sh
#   COLD_REPEATS=3 bash benchmarks/dockerfile-cache.sh   # then cold builds only, interleaved
#
# Prints a markdown table: times, the image's size, whether its binary is ruchy-image's byte
# for byte, and ratios against the Dockerfile before (below 1: faster). With COLD_REPEATS=N, a
# second table: N rounds of one cold build of each Dockerfile in turn (a fresh copy each), so
# that a machine busy with other work weighs on all three alike; medians and their ratios.
APPS="${APPS:-deps}"
source "$(dirname "$0")/lib.sh"
BEFORE=39c972a
git show "$BEFORE:dockerfiles/Dockerfile" > "$work/Dockerfile.before"

ratio() { echo "$1 $2" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "-" }'; }
before_build() { db_build before "$work/Dockerfile.before"; }
before_keep() { db_keep before "$work/Dockerfile.before"; }
layer_build() { db_build layer dockerfiles/Dockerfile; }
layer_keep() { db_keep layer dockerfiles/Dockerfile; }

echo "| app | build | cold | no-change rebuild | one-line-change rebuild | image size | binary = ruchy-image's |"
echo "|---|---|---|---|---|---|---|"
for app in $APPS; do
  declare -A row=()
  names=(ri before layer bk)
  labels=("ruchy-image build --builder docker" "docker build, Dockerfile before ($BEFORE)"
    "docker build -f dockerfiles/Dockerfile (dependency layer)"
    "DOCKER_BUILDKIT=1 docker build -f dockerfiles/Dockerfile.buildkit")
  for name in "${names[@]}"; do
    # A fresh copy for each: every cold build starts from a context no cache has seen.
    rm -rf "$work/$app"
    prepare_app "$app"
    time_three "$name"
    row[$name]="$cold $same $change $(image_size "$(tag "$name")") $(binary_sha "$(tag "$name")")"
  done
  read -r _ _ _ _ ri_sha <<< "${row[ri]}"
  read -r b_cold b_same b_change _ _ <<< "${row[before]}"
  for i in "${!names[@]}"; do
    read -r c s ch size sha <<< "${row[${names[$i]}]}"
    same_binary=no; [ "$sha" = "$ri_sha" ] && same_binary=yes
    printf '| %s | %s | %.2f s | %.2f s | %.2f s | %s B | %s |\n' \
      "$app" "${labels[$i]}" "$c" "$s" "$ch" "$size" "$same_binary"
  done
  for i in 0 2 3; do
    read -r c s ch _ _ <<< "${row[${names[$i]}]}"
    printf '| %s | ratio %s / before | %s | %s | %s | | |\n' "$app" "${names[$i]}" \
      "$(ratio "$c" "$b_cold")" "$(ratio "$s" "$b_same")" "$(ratio "$ch" "$b_change")"
  done
done

[ "${COLD_REPEATS:-0}" -gt 0 ] || exit 0
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "| app | Dockerfile | cold builds (interleaved) | median | ratio / before |"
echo "|---|---|---|---|---|"
for app in $APPS; do
  declare -A colds=()
  for round in $(seq "$COLD_REPEATS"); do
    for name in before layer bk; do
      rm -rf "$work/$app"
      prepare_app "$app"
      # Cache ids of this round's own: BuildKit's cold build starts from empty cache mounts.
      export CACHE_ID_SUFFIX="-cold-$round"
      colds[$name]+="$(seconds "${name}_build") "
      "${name}_keep"
    done
  done
  before_median=$(echo "${colds[before]}" | median)
  for name in before layer bk; do
    m=$(echo "${colds[$name]}" | median)
    printf '| %s | %s | %s| %.2f s | %s |\n' "$app" "$name" "${colds[$name]}" "$m" "$(ratio "$m" "$before_median")"
  done
done
