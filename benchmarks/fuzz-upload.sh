#!/usr/bin/env bash
# Fuzzes the service's upload unpacker (src/shells/serve/upload.rs) for a bounded time with
# cargo fuzz (libFuzzer). No nightly here: rustup's stable with RUSTC_BOOTSTRAP=1 takes the
# -Z flags cargo fuzz passes. Seeds: the issue's climbing link chain, links that stay inside,
# odd names and a manifest naming a path out, made on the spot.
#
#   benchmarks/fuzz-upload.sh [SECONDS]     (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
corpus=benchmarks/fuzz/corpus/upload_unpacker
mkdir -p "$corpus"
seed=$(mktemp -d)
trap 'rm -rf "$seed"' EXIT
# A chain of links that climbs out (each one inside on its own).
mkdir -p "$seed/chain/a"
ln -s .. "$seed/chain/a/l"
ln -s .. "$seed/chain/up1"
for k in 2 3 4; do ln -s "up$((k - 1))/.." "$seed/chain/up$k"; done
ln -s a/l/up4/etc/hostname "$seed/chain/Cargo.toml"
tar -C "$seed/chain" -cf "$corpus/chain.tar" .
# Links that stay inside, an odd name, a manifest with a path out.
mkdir -p "$seed/inside/d"
printf '[package]\nname = "x"\n[dependencies]\ny = { path = "../y" }\n' > "$seed/inside/d/Cargo.toml"
ln -s d "$seed/inside/e"
ln -s e/Cargo.toml "$seed/inside/Cargo.toml"
printf 'fn main() {}\n' > "$seed/inside/a   b
.rs"
tar -C "$seed/inside" -cf "$corpus/inside.tar" .
gzip -c "$corpus/inside.tar" > "$corpus/inside.tar.gz"
RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir benchmarks/fuzz upload_unpacker "$corpus" -- \
  -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536
