#!/usr/bin/env bash
# Packages a big prebuilt executable, this machine's dockerd (75 MB, glibc, dynamic), with
# `ruchy-image build BINARY --base …` at each preset's gzip and zstd level, and reports the
# `--json` record's assemble_time_ms and binary layer size beside `gzip -9` (zlib level 9,
# what layers were compressed with before) of the same file, in one run. The base is made
# here FROM scratch: dockerd's loader and libraries (its ldd closure) at their paths, so the
# image really runs (`dockerd --version` is checked).
#
#   bash benchmarks/prebuilt.sh            BINARY=/path/to/elf changes the input
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet
RI="$PWD/target/release/ruchy-image"
binary="${BINARY:-/usr/sbin/dockerd}"
work=$(mktemp -d)
base="ruchy-image-bench/glibc-$$:base"
made=("$base")
cleanup() {
  for image in "${made[@]}"; do docker rmi -f "$image" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The base: merged /usr as on the host, the loader and every library ldd resolves.
root="$work/context/root"
mkdir -p "$root"/usr/{lib,lib64} "$root/tmp"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
{ ldd "$binary" 2>/dev/null || true; } \
  | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u \
  | while read -r lib; do
      canonical="$(realpath "$lib")"
      # /lib/x86_64-linux-gnu/… is /usr/lib/… on a merged-/usr host.
      for path in "$lib" "$canonical"; do
        dest="$root/usr${path#/usr}"
        mkdir -p "$(dirname "$dest")"
        cp -L "$canonical" "$dest"
      done
    done
printf 'FROM scratch\nCOPY root/ /\n' > "$work/context/Dockerfile"
docker build -q -t "$base" "$work/context" >"$work/base.log" 2>&1 || { cat "$work/base.log" >&2; exit 1; }

size=$(stat -c %s "$binary")
echo "input: $binary, $size bytes"
start=$(date +%s.%N)
zlib=$(gzip -9 -c "$binary" | wc -c)
zlib_ms=$(echo "($(date +%s.%N) - $start) * 1000 / 1" | bc)
mibps() { echo "scale=0; $size * 1000 / 1048576 / $1" | bc; }
echo
echo "| compression | assemble_time_ms | MiB/s | binary layer | vs gzip -9 |"
echo "|---|---:|---:|---:|---:|"
echo "| gzip -9 (zlib 9, before; compression alone) | $zlib_ms | $(mibps "$zlib_ms") | $zlib B | 1.000 |"
for codec in gzip zstd; do
for preset in balanced aggressive size; do
  # A fresh cache each time: the layer cache would otherwise answer the second run.
  export RUCHY_IMAGE_CACHE="$work/cache-$codec-$preset"
  json="$work/$codec-$preset.json"
  "$RI" build "$binary" --base "$base" -O "$preset" --compression "$codec" --no-load \
    --oci-layout "$work/layout-$codec-$preset" --json "$json" --quiet
  rm -rf "$work/layout-$codec-$preset" "$RUCHY_IMAGE_CACHE"
  ms=$(jq .assemble_time_ms "$json")
  layer=$(jq .image.binary_layer_size "$json")
  echo "| $codec, $preset's level | $ms | $(mibps "$ms") | $layer B | $(echo "scale=3; $layer / $zlib" | bc) |"
done
done
# The packaged binary runs on its base.
"$RI" build "$binary" --base "$base" --tag "ruchy-image-bench/prebuilt-$$:run" --quiet >/dev/null
made+=("ruchy-image-bench/prebuilt-$$:run")
echo
docker run --rm "ruchy-image-bench/prebuilt-$$:run" --version
