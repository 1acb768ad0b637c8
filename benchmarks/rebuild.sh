#!/usr/bin/env bash
# Rebuild times through the builder container, side by side with `docker build` of a plain
# multi-stage Dockerfile (same builder image, same flags) and host cargo with a kept target
# dir; then cold start of our image vs the `docker build` one. One run, one machine.
#
#   benchmarks/rebuild.sh            (needs an engine and `ruchy-image builder import-host`)
#
# Prints a markdown table. Times are wall seconds of the whole command.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
RI="$PWD/target/release/ruchy-image"
BUILDER=$("$RI" builder import-host --json | sed -n 's/.*"tag": "\(.*\)".*/\1/p')
work=$(mktemp -d)
export RUCHY_IMAGE_CACHE="$work/cache"
cleanup() {
  docker rmi -f bench/tiny:ri bench/tiny:db bench/deps:ri bench/deps:db >/dev/null 2>&1 || true
  for v in $(docker volume ls -q -f "label=dev.ruchy.image.cache" | grep -v cargo-registry); do
    docker volume inspect -f '{{index .Labels "dev.ruchy.image.cache"}}' "$v" | grep -q "^$work" \
      && docker volume rm -f "$v" >/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
seconds() { local s; s=$(now); "$@" >/dev/null 2>&1; echo "$(now) - $s" | bc; }
edit() { echo "// edit $(now)" >> "$1/src/main.rs"; }

row() { printf '| %s | %s | %.2f s | %.2f s | %.2f s |\n' "$@"; }

echo "| app | builder | cold | no-change rebuild | one-line-change rebuild |"
echo "|---|---|---|---|---|"
for app in tiny deps; do
  dir="$work/$app"
  mkdir -p "$dir/src"
  # The Dockerfile goes inside the context: with -f outside it, the docker CLI rewrites
  # .dockerignore on every build, which busts the cache of `COPY . .`.
  cp benchmarks/Dockerfile.rebuild "$dir/Dockerfile"
  printf 'target\nDockerfile\n.dockerignore\n' > "$dir/.dockerignore"
  if [ "$app" = tiny ]; then
    cp examples/fibonacci.rs "$dir/src/main.rs"
    printf '[package]\nname = "tiny"\nversion = "0.1.0"\nedition = "2021"\n[workspace]\n' > "$dir/Cargo.toml"
    bin=tiny
  else
    cp -r benchmarks/apps/deps-app/. "$dir/"
    bin=deps-app
  fi
  ri() { "$RI" build "$dir" -O aggressive --builder docker --builder-image "$BUILDER" --tag "bench/$app:ri" -q; }
  cold=$(seconds ri); same=$(seconds ri); edit "$dir"; change=$(seconds ri)
  row "$app" "ruchy-image (docker builder)" "$cold" "$same" "$change"

  db() { docker build -q --build-arg BUILDER_IMAGE="$BUILDER" --build-arg BIN=$bin -t "bench/$app:db" "$dir"; }
  cold=$(seconds db); same=$(seconds db); edit "$dir"; change=$(seconds db)
  row "$app" "docker build (multi-stage)" "$cold" "$same" "$change"

  local_ri() { "$RI" build "$dir" -O aggressive --builder local --no-load -q; }
  cold=$(seconds local_ri); same=$(seconds local_ri); edit "$dir"; change=$(seconds local_ri)
  row "$app" "ruchy-image (host cargo)" "$cold" "$same" "$change"
done

echo
echo "| image | cold start median (20 runs) | min | max |"
echo "|---|---|---|---|"
for image in bench/tiny:ri bench/tiny:db; do
  if ! json=$("$RI" run "$image" -n 20 --json -- 20 2>"$work/run.err"); then
    echo "| $image | failed: $(tail -1 "$work/run.err") |"
    continue
  fi
  echo "$json" | sed -n 's/.*"cold_start_\(median\|min\|max\)_ms": \([0-9.]*\).*/\2/p' | tr '\n' ' ' \
    | awk -v i="$image" '{ printf "| %s | %.1f ms | %.1f ms | %.1f ms |\n", i, $1, $2, $3 }'
done
