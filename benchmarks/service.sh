#!/usr/bin/env bash
# What the service adds to a build, and how fast it answers.
#
# 1. RUNS no-change rebuilds of examples/fibonacci.rs (aggressive, docker builder), one at a
#    time, through `ruchy-image build` and through the API (POST /v1/builds, then GET the
#    record until it ends), interleaved so both see the same machine; prints each pair, the
#    means and the ratio (the issue's bar: the service adds at most 20% per build).
# 2. GET /v1/builds/{id} under load: wrk (Debian's `wrk` package) with 4 connections for
#    DURATION, printing its latency distribution (p50, p99).
#
#   benchmarks/service.sh [RUNS]     (default 20; DURATION=10s)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
cargo build --release --quiet
RI="$PWD/target/release/ruchy-image"
BUILDER=$("$RI" builder import-host --json | sed -n 's/.*"tag": "\(.*\)".*/\1/p')
work=$(mktemp -d)
export RUCHY_IMAGE_CACHE="$work/cache"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  for v in $(docker volume ls -q -f "label=dev.ruchy.image.cache" | grep -v cargo-home); do
    docker volume inspect -f '{{index .Labels "dev.ruchy.image.cache"}}' "$v" | grep -q "^$work" \
      && docker volume rm -f "$v" >/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

head -c 24 /dev/urandom | base64 > "$work/token"
token=$(cat "$work/token")
"$RI" serve --data-dir "$work/data" --listen 127.0.0.1:0 --token-file "$work/token" \
  --builder-image "$BUILDER" > "$work/serve.out" 2> "$work/serve.err" &
server=$!
for _ in $(seq 1 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/serve.out")
mkdir -p "$work/src" && cp examples/fibonacci.rs "$work/src/"
tar -C "$work/src" -czf "$work/context.tar.gz" fibonacci.rs
auth=(-H "Authorization: Bearer $token")

cli_build() {
  "$RI" build "$work/src/fibonacci.rs" -O aggressive --builder docker --builder-image "$BUILDER" -q
}
api_build() {
  local id status
  id=$(curl -sS "${auth[@]}" --data-binary "@$work/context.tar.gz" \
    "$url/v1/builds?optimize=aggressive" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
  while :; do
    status=$(curl -sS "${auth[@]}" "$url/v1/builds/$id" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
    case "$status" in queued|working) sleep 0.02 ;; success) echo "$id"; return 0 ;; *) return 1 ;; esac
  done
}
ms() { local a b; a=$(date +%s%N); "$@" >/dev/null; b=$(date +%s%N); echo $(((b - a) / 1000000)); }

cli_build >/dev/null; last=$(api_build)   # both caches warm: every run below is a no-change rebuild
echo "cli_ms api_ms"
for _ in $(seq 1 "$runs"); do echo "$(ms cli_build) $(ms api_build)"; done | awk '
  { print; a += $1; b += $2 }
  END { printf "mean: cli %.1f ms, api %.1f ms, api/cli %.2f\n", a/NR, b/NR, (b/NR)/(a/NR) }'

if command -v wrk >/dev/null; then
  cat > "$work/auth.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
LUA
  echo "GET /v1/builds/{id}, 4 connections, ${DURATION:-10s}:"
  wrk -t 2 -c 4 -d "${DURATION:-10s}" --latency -s "$work/auth.lua" "$url/v1/builds/$last" \
    | sed -n '/Latency Distribution/,/Requests\/sec/p'
else
  echo "wrk is not installed (apt-get install wrk): no latency numbers" >&2
fi
