#!/usr/bin/env bash
# First contact, timed: README's quick start (`bash .ci/quick-setup && cargo run --release --
# build examples/fibonacci.rs ...`) phase by phase, then a table. Run from anywhere, as root or
# with sudo.
#
#   bash benchmarks/quickstart.sh          from this machine as it is
#   bash benchmarks/quickstart.sh --fresh  first empty what a new machine would not have, as far
#                                          as a machine can be emptied: the main job's Debian
#                                          packages (removed, apt's cache cleaned), builder
#                                          images, ruchy-image's std cache, cargo's downloaded
#                                          crates and target/release. The engine is stopped.
#                                          DESTRUCTIVE: run `bash .ci/setup` after it to get the
#                                          test lab back.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ "${1:-}" = --fresh ]; then
  echo "==> emptying: builder images, caches, target/release, the main job's packages" >&2
  if docker info >/dev/null 2>&1; then
    images=$(docker images -q -f label=dev.ruchy.image.builder.fingerprint | sort -u)
    [ -z "$images" ] || docker rmi -f $images >/dev/null
    as_root pkill -x dockerd || true
    while pgrep -x dockerd >/dev/null; do sleep 1; done
  fi
  rm -rf target/release "${RUCHY_IMAGE_CACHE:-$HOME/.cache/ruchy-image}" \
    "${CARGO_HOME:-$HOME/.cargo}/registry" "${CARGO_HOME:-$HOME/.cargo}/git"
  # What .ci/quick-setup installs and a new machine lacks (libssl-dev and pkg-config come with
  # this machine kind: they stay), and the test lab's arm64 cross linker, with which
  # import-host would also build the aarch64 stds a new machine's quick start does not.
  DEBIAN_FRONTEND=noninteractive as_root apt-get remove -y -qq \
    docker.io rustc-web cargo-web rust-web-src musl-tools libunwind-14-dev \
    gcc-aarch64-linux-gnu >/dev/null
  as_root apt-get autoremove -y -qq >/dev/null
  as_root apt-get clean
fi

times=$(mktemp)
trap 'rm -f "$times"' EXIT
started=$SECONDS
QUICKSTART_TIMES=$times bash .ci/quick-setup
image_started=$SECONDS
rm -rf out/fibonacci out/fibonacci.tar
cargo run --quiet --release --locked -- build examples/fibonacci.rs --optimize aggressive \
  --oci-layout out/fibonacci --output out/fibonacci.tar
echo "image $((SECONDS - image_started))" >>"$times"
total=$((SECONDS - started))

seconds() { awk -v p="$1" '$1 == p { print $2 }' "$times"; }
minutes() { printf '%dm %02ds' $(($1 / 60)) $(($1 % 60)); }
echo
echo "| phase | time |"
echo "|---|---:|"
echo "| apt: the engine, Debian's Rust with std sources, musl tools | $(minutes "$(seconds packages)") |"
echo "| our build: cargo build --release (while apt runs) | $(minutes "$(seconds tool)") |"
echo "| engine start | $(minutes "$(seconds engine)") |"
echo "| builder image: builder import-host (musl std) | $(minutes "$(seconds builder)") |"
echo "| first image: build examples/fibonacci.rs -O aggressive | $(minutes "$(seconds image)") |"
echo "| **total, wall clock** | **$(minutes "$total")** |"
