#!/usr/bin/env bash
# Real projects, not only ours: popular tools from crates.io and a small service of our own
# (benchmarks/apps/tls-service: axum, reqwest with rustls, so ring's C and assembly), each
# built cold by ruchy-image (preset $PRESET, the docker builder, static musl) and by the host's
# `cargo build --release`, then run: the image with `--version` (tls-service builds a rustls
# client first). Prints a markdown table: builds, runs, binary and image size, wall time, and
# the time ratio to host cargo. Cold means an empty target volume of the run's own for each
# project (ruchy-image) and an empty target dir (host cargo); both share downloaded crates.
#
#   benchmarks/real-projects.sh                       # every project below
#   PROJECTS="sd tls-service" benchmarks/real-projects.sh
#
# The crates come through cargo itself (`cargo fetch` of a throwaway manifest that depends on
# them), with the Cargo.lock they were published with. PRESET, and the cleanup of every image
# and volume the run made: benchmarks/lib.sh.
source "$(dirname "$0")/lib.sh"

# name        source                 binary      (crates.io name@version, or an app of ours)
CORPUS="ripgrep     ripgrep@15.2.0         rg
fd-find     fd-find@10.5.0         fd
sd          sd@1.0.0               sd
hyperfine   hyperfine@1.20.0       hyperfine
tls-service app:tls-service        tls-service"
PROJECTS="${PROJECTS:-$(echo "$CORPUS" | awk '{print $1}' | tr '\n' ' ')}"

# The crates' sources, downloaded once by cargo into its registry.
fetch_crates() {
  local manifest="$work/fetch" spec
  mkdir -p "$manifest/src"
  printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n' > "$manifest/Cargo.toml"
  echo 'fn main() {}' > "$manifest/src/main.rs"
  for name in $PROJECTS; do
    spec=$(echo "$CORPUS" | awk -v n="$name" '$1 == n {print $2}')
    [ -n "$spec" ] || { echo "unknown project $name (known: $(echo "$CORPUS" | awk '{print $1}' | tr '\n' ' '))" >&2; exit 2; }
    case "$spec" in app:*) continue ;; esac
    echo "${spec%@*} = \"=${spec#*@}\"" >> "$manifest/Cargo.toml"
  done
  # Binary-only packages are fetched all the same (cargo warns that they have no library).
  cargo fetch --quiet --manifest-path "$manifest/Cargo.toml" 2>/dev/null
}

# A fresh copy of project $1's source in $dir, binary in $bin.
prepare_project() {
  local spec src
  app=$1
  spec=$(echo "$CORPUS" | awk -v n="$app" '$1 == n {print $2}')
  bin=$(echo "$CORPUS" | awk -v n="$app" '$1 == n {print $3}')
  case "$spec" in
    app:*) src="benchmarks/apps/${spec#app:}" ;;
    *) src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"${spec%@*}-${spec#*@}" | head -1) ;;
  esac
  dir="$work/src/$app"
  mkdir -p "$dir"
  cp -r "$src/." "$dir/"
  export RUCHY_IMAGE_TARGET_VOLUME="ruchy-image-bench-$$-$app"
}

ri_project() {
  "$RI" build "$dir" --bin "$bin" -O "$PRESET" --builder docker --builder-image "$BUILDER" \
    --tag "$(tag ri)" --json "$work/$app.json" -q
}
host_project() {
  local locked=()
  [ -f "$dir/Cargo.lock" ] && locked=(--locked)
  cargo build --release --quiet "${locked[@]}" --manifest-path "$dir/Cargo.toml" --bin "$bin" \
    --target-dir "$work/host/$app"
}
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
mib() { echo "$1" | awk '{ printf "%.1f MiB", $1 / 1048576 }'; }
ratio() { echo "$1 $2" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "-" }'; }

fetch_crates
rows=()
failed=0
for app in $PROJECTS; do
  prepare_project "$app"
  echo "==> $app: ruchy-image (preset $PRESET)" >&2
  if ri_time=$(seconds ri_project); then
    ri_keep
    built=yes
    binary=$(json "$work/$app.json" "d['binary_size']")
    stored=$(json "$work/$app.json" "d['image']['compressed_size']")
    linkage=$(json "$work/$app.json" "d['linkage'] + ' ' + d['libc']")
    if version=$(docker run --rm "$(tag ri)" --version 2>&1 | head -1) && [ -n "$version" ]; then
      runs="yes: \`$version\`"
    else
      runs="no: $version"; failed=1
    fi
  else
    built=no; runs=-; binary=0; stored=0; linkage=-; ri_time=0; failed=1
  fi
  echo "==> $app: host cargo build --release" >&2
  if host_time=$(seconds host_project); then
    host_binary=$(stat -c %s "$work/host/$app/release/$bin")
  else
    host_time=0; host_binary=0
  fi
  rows+=("$(printf '| %s | %s | %s | %s (%s) | %s | %.1f s | %s, %.1f s | %s |' \
    "$app" "$built" "$runs" "$(mib "$binary")" "$linkage" "$(mib "$stored")" "$ri_time" \
    "$(mib "$host_binary")" "$host_time" "$(ratio "$ri_time" "$host_time")")")
done

echo
echo "| project | builds | runs (\`--version\`) | binary | image stored | time ($PRESET, cold) | host \`cargo build --release\` (glibc): binary, time | time / host |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit "$failed"
