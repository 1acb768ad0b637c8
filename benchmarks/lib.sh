# Shared by benchmarks/rebuild.sh, build-time.sh and dockerfile-cache.sh (source it; it cds to
# the repository root): the release ruchy-image, the builder image, throwaway copies of the
# apps, the builds being compared, a timer, and a cleanup that removes every image, build-cache
# image, BuildKit cache record and cache volume the run made.
#
#   PRESET            the preset every build uses                      [aggressive]
#   DOCKERFILE        the multi-stage Dockerfile `docker build` runs   [dockerfiles/Dockerfile]
#   APPS              which apps: tiny (examples/fibonacci.rs), deps (benchmarks/apps/deps-app),
#                     or the name of another app in benchmarks/apps
#   CARGO_TARGET_DIR  where the release ruchy-image is built           [target]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet
RI="$(realpath "${CARGO_TARGET_DIR:-target}")/release/ruchy-image"
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

# BuildKit goes through Debian's client: the static one first on PATH has no buildx.
BUILDKIT_DOCKER=/usr/bin/docker
# IDs of BuildKit's build cache records; the ones this run adds are pruned at the end.
buildkit_records() {
  [ -x "$BUILDKIT_DOCKER" ] || return 0
  "$BUILDKIT_DOCKER" system df -v --format '{{json .BuildCache}}' | tr ',' '\n' \
    | sed -n 's/.*"ID":"\([^"]*\)".*/\1/p' | sort
}
buildkit_before=$(buildkit_records)

cleanup() {
  # Tags first, then the images they pointed to; rmi also removes untagged parents, which
  # takes the classic builder's intermediate images of both stages with it.
  for image in "${made_images[@]}"; do docker rmi -f "$image" >/dev/null 2>&1 || true; done
  # Target volumes of this run (see prepare_app); the shared cargo registry volume stays.
  for v in $(docker volume ls -q -f "name=ruchy-image-bench-$$-"); do
    docker volume rm -f "$v" >/dev/null
  done
  # BuildKit's records of this run (and of any BuildKit build that ran meanwhile: a cache miss
  # for it later, never a wrong build); a record goes once its children have, so a few passes.
  for _ in 1 2 3 4 5; do
    new=$(comm -13 <(echo "$buildkit_before") <(buildkit_records))
    [ -n "$new" ] || break
    for id in $new; do
      "$BUILDKIT_DOCKER" builder prune --all --force --filter "id=$id" >/dev/null 2>&1 || true
    done
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

# prepare_app NAME: a fresh copy in $dir, binary $bin. Comments unique to this copy make the
# context and its manifest new to docker build's layer cache, so the first build is cold.
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
  # The manifest too: the dependency layer of dockerfiles/Dockerfile is keyed on it.
  echo "# benchmark run $(now)" >> "$dir/Cargo.toml"
  builds=0
}

# ruchy-image through its builder container; every image it loads is removed at the end.
ri_build() {
  "$RI" build "$dir" -O "$PRESET" --builder docker --builder-image "$BUILDER" \
    --tag "$(tag ri)" -q
}
# docker build (classic builder) of a multi-stage Dockerfile, same builder image and preset:
# db_build [NAME [DOCKERFILE]], tagged NAME [db], of DOCKERFILE [$DOCKERFILE].
db_build() {
  docker build -q -f "${2:-$DOCKERFILE}" --build-arg BUILDER_IMAGE="$BUILDER" \
    --build-arg BIN="$bin" --build-arg OPTIMIZE="$PRESET" -t "$(tag "${1:-db}")" "$dir"
}
# The same through BuildKit: bk_build [NAME [DOCKERFILE]], tagged NAME [bk], of DOCKERFILE
# [dockerfiles/Dockerfile.buildkit], with cache mounts of this run's own (empty at first; a
# CACHE_ID_SUFFIX gives a build fresh ones).
bk_build() {
  DOCKER_BUILDKIT=1 "$BUILDKIT_DOCKER" build -q -f "${2:-dockerfiles/Dockerfile.buildkit}" \
    --build-arg BUILDER_IMAGE="$BUILDER" --build-arg BIN="$bin" --build-arg OPTIMIZE="$PRESET" \
    --build-arg CACHE_ID="ruchy-image-bench-$$${CACHE_ID_SUFFIX:-}" -t "$(tag "${1:-bk}")" "$dir"
}
# After each timed build (untimed): hold on to what it made, for cleanup. A loaded tag that
# moves leaves the old image untagged, so ruchy-image's images are kept by ID; the Dockerfile's
# earlier stages (build, and recipe where there is one) are tagged through fully cached
# `docker build --target STAGE`. db_keep and bk_keep take db_build's and bk_build's arguments.
ri_keep() {
  made_images+=("$(tag ri)" "$(docker image inspect -f '{{.Id}}' "$(tag ri)")")
}
db_keep() {
  local name=${1:-db} file=${2:-$DOCKERFILE} stage
  builds=$((builds + 1))
  docker tag "$(tag "$name")" "$(tag "$name-$builds")"
  made_images+=("$(tag "$name")" "$(tag "$name-$builds")")
  for stage in build recipe; do
    grep -q "^FROM .* AS $stage\$" "$file" || continue
    docker build -q --target "$stage" -f "$file" --build-arg BUILDER_IMAGE="$BUILDER" \
      --build-arg BIN="$bin" --build-arg OPTIMIZE="$PRESET" -t "$(tag "$name-$stage-$builds")" \
      "$dir" >/dev/null 2>&1
    made_images+=("$(tag "$name-$stage-$builds")")
  done
}
# BuildKit leaves no intermediate images, only cache records (pruned by cleanup).
bk_keep() {
  builds=$((builds + 1))
  docker tag "$(tag "${1:-bk}")" "$(tag "${1:-bk}-$builds")"
  made_images+=("$(tag "${1:-bk}")" "$(tag "${1:-bk}-$builds")")
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
# sha256 of an image's /usr/local/bin/$bin, read through a created container.
binary_sha() {
  local id
  id=$(docker create "$1")
  docker cp "$id:/usr/local/bin/$bin" - | tar -xO | sha256sum | cut -c1-64
  docker rm "$id" >/dev/null
}
