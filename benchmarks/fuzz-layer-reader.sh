#!/usr/bin/env bash
# Fuzzes the base layer reader (src/pipeline/base/fs.rs) for a bounded time with cargo fuzz
# (libFuzzer; needs a nightly toolchain). Seeds: real layers made on the spot.
#
#   benchmarks/fuzz-layer-reader.sh [SECONDS]     (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
corpus=benchmarks/fuzz/corpus/layer_reader
mkdir -p "$corpus"
# Seeds: a gzip'd and a plain tar with dirs, files, a symlink and a whiteout.
seed=$(mktemp -d)
trap 'rm -rf "$seed"' EXIT
mkdir -p "$seed/etc" "$seed/usr/lib"
echo 'root:x:0:0:root:/root:/bin/sh' > "$seed/etc/passwd"
ln -s usr/lib "$seed/lib"
touch "$seed/etc/.wh.motd"
tar -C "$seed" -cf "$corpus/seed.tar" etc usr lib
gzip -c "$corpus/seed.tar" > "$corpus/seed.tar.gz"
cargo +nightly fuzz run --fuzz-dir benchmarks/fuzz layer_reader "$corpus" -- \
  -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=262144
