#!/usr/bin/env bash
# First contact, timed: README's quick start (`bash .ci/quick-setup && cargo run --release --
# build examples/fibonacci.rs ...`) phase by phase, then a table. As root or with sudo.
#
#   bash benchmarks/quickstart.sh             the quick start on this machine as it is
#   bash benchmarks/quickstart.sh --isolated  every phase from nothing, beside whatever this
#                                             machine runs and without changing it
#
# --isolated is as fresh as a shared machine allows: apt installs the main job's packages into
# a new Debian chroot (debootstrap, with the packages a machine of this kind comes with
# already in, so only what the quick start adds is timed; apt's cache empty); cargo builds the
# tool with an empty CARGO_HOME (every crate downloaded) and target dir, at the same time, as
# .ci/quick-setup does; import-host makes a builder image under a tag of its own from an empty
# std cache, with the test lab's arm64 cross gcc hidden (a new machine has none); the first
# image is built with empty cache volumes. Everything it made is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
log() { printf '==> %s\n' "$*" >&2; }

times=$(mktemp)
work=$(mktemp -d /var/tmp/ruchy-image-quickstart.XXXXXX)
build_cmd=(build examples/fibonacci.rs --optimize aggressive --oci-layout "$work/out/fibonacci" --output "$work/out/fibonacci.tar")

seconds() { awk -v p="$1" '$1 == p { print $2 }' "$times"; }
minutes() { [ -n "$1" ] && printf '%dm %02ds' $(($1 / 60)) $(($1 % 60)) || printf 'n/a'; }
table() {
  echo
  echo "| phase | time |"
  echo "|---|---:|"
  echo "| apt: engine, Debian's Rust with std sources, musl tools | $(minutes "$(seconds packages)") |"
  echo "| our build: cargo build --release (while apt runs) | $(minutes "$(seconds tool)") |"
  echo "| engine start | $(minutes "$(seconds engine)") |"
  echo "| builder image: builder import-host (musl stds) | $(minutes "$(seconds builder)") |"
  echo "| first image: build examples/fibonacci.rs -O aggressive | $(minutes "$(seconds image)") |"
  echo "| **total, wall clock** | **$(minutes "$1")** |"
}

if [ "${1:-}" != --isolated ]; then
  trap 'rm -rf "$times" "$work"' EXIT
  started=$SECONDS
  QUICKSTART_TIMES=$times bash .ci/quick-setup
  image_started=$SECONDS
  target/release/ruchy-image "${build_cmd[@]}"
  echo "image $((SECONDS - image_started))" >>"$times"
  table $((SECONDS - started))
  exit
fi

tag=ruchy-image-builder:quickstart-bench
volumes=(ruchy-image-quickstart-bench-cargo ruchy-image-quickstart-bench-target-0)
cleanup() {
  docker rmi -f "$tag" >/dev/null 2>&1 || true
  docker volume rm -f "${volumes[@]}" >/dev/null 2>&1 || true
  as_root rm -rf "$work" "$times"
}
trap cleanup EXIT

# The chroot: Debian bookworm as this machine's sources name it, plus what this kind of machine
# has before the quick start (a C compiler, OpenSSL's headers, pkg-config). Not timed.
command -v debootstrap >/dev/null || as_root apt-get install -y -qq debootstrap >/dev/null
root="$work/root"
log "making a Debian chroot (not timed)"
as_root debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
as_root cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
as_root rm -f "$root/etc/apt/sources.list"
printf '#!/bin/sh\nexit 101\n' | as_root tee "$root/usr/sbin/policy-rc.d" >/dev/null
as_root chmod +x "$root/usr/sbin/policy-rc.d"
as_root mount --bind /proc "$root/proc"
trap 'as_root umount "$root/proc"; cleanup' EXIT
in_root() { as_root chroot "$root" env DEBIAN_FRONTEND=noninteractive "$@"; }
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends gcc libc6-dev libssl-dev pkg-config ca-certificates >/dev/null
in_root apt-get clean
# The same list as .ci/quick-setup's, read from it.
packages=$(sed -n 's/^MAIN_PACKAGES=(\(.*\))$/\1/p' .ci/quick-setup)

started=$SECONDS
export QUICKSTART_TIMES=$times CARGO_TARGET_DIR="$work/target"
CARGO_HOME="$work/cargo-home" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" bash .ci/quick-setup tool &
building=$!
phase=$SECONDS
# shellcheck disable=SC2086
in_root apt-get install -y -qq --no-install-recommends $packages >/dev/null
echo "packages $((SECONDS - phase))" >>"$times"
wait "$building"
tool="$work/target/release/ruchy-image"

# A new machine has no cross gcc: import-host would build the aarch64 stds too with it. It is
# hidden by a PATH of /usr/bin without it (and without /bin, which is /usr/bin here).
shadow="$work/bin"
mkdir -p "$shadow"
for program in /usr/bin/*; do
  case "${program##*/}" in aarch64-linux-gnu-*) ;; *) ln -s "$program" "$shadow/" ;; esac
done
PATH="$shadow:/usr/sbin" bash .ci/quick-setup builder --tag "$tag" --cache-dir "$work/cache"

phase=$SECONDS
RUCHY_IMAGE_CACHE="$work/cache" RUCHY_IMAGE_CARGO_VOLUME="${volumes[0]}" \
  RUCHY_IMAGE_TARGET_VOLUME="${volumes[1]%-0}" \
  "$tool" "${build_cmd[@]}" --builder-image "$tag"
echo "image $((SECONDS - phase))" >>"$times"
table $((SECONDS - started))
echo "(the engine was already running: its start is not timed in --isolated)"
