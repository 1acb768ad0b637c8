# Shared by benchmarks/rebuild.sh and benchmarks/build-time.sh (source it; it cds to the
# repository root): the release ruchy-image, the builder image, throwaway copies of the apps,
# the two builds being compared, a timer, and a cleanup that removes every image, build-cache
# image and cache volume the run made.
#
#   PRESET      the preset both builds use                         [aggressive]
#   DOCKERFILE  the multi-stage Dockerfile `docker build` runs     [dockerfiles/Dockerfile]
#   APPS        which apps: tiny (examples/fibonacci.rs), deps (benchmarks/apps/deps-app), or
#               the name of another app in benchmarks/apps
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet
RI="${CARGO_TARGET_DIR:-$PWD/target}/release/ruchy-image"
# The same builder image for both: this machine's toolchain (`builder import-host`).
BUILDER=$("$RI" builder import-host --json | sed -n 's/.*"tag": "\(.*\)".*/\1/p')
PRESET="${PRESET:-aggressive}"
DOCKERFILE="$(realpath "${DOCKERFILE:-dockerfiles/Dockerfile}")"
APPS="${APPS:-tiny deps}"
work=$(mktemp -d)
export RUCHY_IMAGE_CACHE="$work/cache"
made_images=()
# Tags of this run only: another run (or another checkout's benchmark) may be going on.
tag() { echo "ruchy-image-bench/$app-$$:$1"; }

cleanup() {
  # Tags first, then the images they pointed to; rmi also removes untagged parents, which
  # takes the classic builder's intermediate images of both stages with it.
  for image in "${made_images[@]}"; do docker rmi -f "$image" >/dev/null 2>&1 || true; done
  # Target volumes of this run (see prepare_app); the shared cargo registry volume stays.
  for v in $(docker volume ls -q -f "name=ruchy-image-bench-$$-"); do
    docker volume rm -f "$v" >/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
# Wall seconds of a command; its output is kept out of the way, and shown if it fails.
seconds() {
  local start
  start=$(now)
  if ! "$@" >"$work/last.log" 2>&1; then
    cat "$work/last.log" >&2
    echo "benchmark step failed: $*" >&2
    return 1
  fi
  echo "$(now) - $start" | bc
}
edit() { echo "// edit $(now)" >> "$dir/src/main.rs"; }

# prepare_app NAME: a fresh copy in $dir, binary $bin. A comment unique to this run makes the
# context new to docker build's layer cache, so the first build is cold for both.
prepare_app() {
  app=$1
  dir="$work/$app"
  mkdir -p "$dir/src"
  if [ "$app" = tiny ]; then
    cp examples/fibonacci.rs "$dir/src/main.rs"
    printf '[package]\nname = "tiny"\nversion = "0.1.0"\nedition = "2021"\n[workspace]\n' > "$dir/Cargo.toml"
    bin=tiny
  elif [ "$app" = deps ]; then
    cp -r benchmarks/apps/deps-app/. "$dir/"
    bin=deps-app
  else
    cp -r "benchmarks/apps/$app/." "$dir/"
    bin=$app
  fi
  # A target volume of the run's own, empty, so a cold build is cold (TARGET_VOLUME: one the
  # caller shares between apps).
  export RUCHY_IMAGE_TARGET_VOLUME="ruchy-image-bench-$$-${TARGET_VOLUME:-$app}"
  printf 'target\nDockerfile*\n.dockerignore\n' > "$dir/.dockerignore"
  echo "// benchmark run $(now)" >> "$dir/src/main.rs"
  builds=0
}

# ruchy-image through its builder container; every image it loads is removed at the end.
ri_build() {
  "$RI" build "$dir" -O "$PRESET" --builder docker --builder-image "$BUILDER" \
    --tag "$(tag ri)" -q
}
# docker build of the multi-stage Dockerfile, same builder image and preset.
db_build() {
  docker build -q -f "$DOCKERFILE" --build-arg BUILDER_IMAGE="$BUILDER" \
    --build-arg BIN="$bin" --build-arg OPTIMIZE="$PRESET" -t "$(tag db)" "$dir"
}
# After each timed build (untimed): hold on to what it made, for cleanup. A loaded tag that
# moves leaves the old image untagged, so ruchy-image's images are kept by ID; the Dockerfile's
# build stage is tagged through a fully cached `docker build --target build`.
ri_keep() {
  made_images+=("$(tag ri)" "$(docker image inspect -f '{{.Id}}' "$(tag ri)")")
}
db_keep() {
  builds=$((builds + 1))
  docker tag "$(tag db)" "$(tag "db-$builds")"
  docker build -q --target build -f "$DOCKERFILE" --build-arg BUILDER_IMAGE="$BUILDER" \
    --build-arg BIN="$bin" --build-arg OPTIMIZE="$PRESET" -t "$(tag "db-build-$builds")" \
    "$dir" >/dev/null 2>&1
  made_images+=("$(tag db)" "$(tag "db-$builds")" "$(tag "db-build-$builds")")
}

# time_three ri|db: cold build, no-change rebuild, one-line-change rebuild, in $cold $same
# $change (wall seconds).
time_three() {
  cold=$(seconds "$1_build"); "$1_keep"
  same=$(seconds "$1_build"); "$1_keep"
  edit
  change=$(seconds "$1_build"); "$1_keep"
}

# Engine's view of an image: unpacked size in bytes, and layer count.
image_size() { docker image inspect -f '{{.Size}}' "$1"; }
image_layers() { docker image inspect -f '{{len .RootFS.Layers}}' "$1"; }
