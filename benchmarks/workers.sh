#!/usr/bin/env bash
# What sharing one PostgreSQL queue costs: the same builds through one `serve` on SQLite, one
# worker on PostgreSQL, and two workers on PostgreSQL, side by side in one run.
#
# For each setup: 12 projects (copies of examples/fibonacci.rs under 12 names) are built
# until every worker has them warm, then ROUNDS times all 12 are submitted at once and timed
# until the last ends (no-change builds: the queue, the API and the workers are what is
# measured, not the compiler), and then the claim latency (created -> started, from the
# records) of SAMPLES single builds sent to an idle service, to the worker that did not start
# first (so under PostgreSQL the other worker may be the one woken by LISTEN/NOTIFY).
# Both workers share this machine's cores: expect no speed-up, only the queue's overhead.
#
#   benchmarks/workers.sh [ROUNDS] [SAMPLES]     (default 3 and 10)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
samples=${2:-10}
cargo build --release --quiet
RI="$PWD/target/release/ruchy-image"
BUILDER=$("$RI" builder import-host --json | sed -n 's/.*"tag": "\(.*\)".*/\1/p')
work=$(mktemp -d)
chmod 755 "$work"
pids=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  [ -d "$work/pg" ] && as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
  for v in $(docker volume ls -q -f "label=dev.ruchy.image.cache" | grep -v cargo-home); do
    docker volume inspect -f '{{index .Labels "dev.ruchy.image.cache"}}' "$v" | grep -q "^$work" \
      && docker volume rm -f "$v" >/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

# A PostgreSQL cluster of this run's own.
mkdir -p "$work/pg" && [ "$(id -u)" = 0 ] && chown postgres "$work/pg"
as_pg "$pg_bin/initdb" --auth=trust --username=postgres --no-sync -D "$work/pg/data" >/dev/null
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w start \
  -o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$work/pg" >/dev/null
createdb() { "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres "$1"; }

head -c 24 /dev/urandom | base64 > "$work/token"
auth=(-H "Authorization: Bearer $(cat "$work/token")")
for i in $(seq -w 1 12); do
  mkdir -p "$work/src/p$i" && cp examples/fibonacci.rs "$work/src/p$i/p$i.rs"
  tar -C "$work/src/p$i" -czf "$work/src/p$i.tar.gz" "p$i.rs"
done

# start NAME [--database URL]: a worker; prints its URL.
start() {
  local name=$1; shift
  "$RI" serve --data-dir "$work/$name" --listen 127.0.0.1:0 --token-file "$work/token" \
    --builder-image "$BUILDER" --worker-name "$name" "$@" > "$work/$name.out" 2> "$work/$name.err" &
  pids+=($!)
  for _ in $(seq 1 100); do grep -q listening "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  grep -o 'http://[0-9.:]*' "$work/$name.out"
}
submit() { curl -sS "${auth[@]}" --data-binary "@$work/src/$2.tar.gz" "$1/v1/builds?optimize=aggressive" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
# wait_all URL ID...: until every build ended; fails unless all succeeded.
wait_all() {
  local url=$1; shift
  python3 - "$url" "$(cat "$work/token")" "$@" <<'PY'
import json, sys, time, urllib.request
url, token, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
def get(i):
    req = urllib.request.Request(f"{url}/v1/builds/{i}", headers={"Authorization": f"Bearer {token}"})
    return json.load(urllib.request.urlopen(req))
pending = set(ids)
while pending:
    for i in list(pending):
        r = get(i)
        if r["status"] not in ("queued", "working"):
            if r["status"] != "success":
                sys.exit(f"build {i}: {r['status']} {r.get('error')}")
            pending.discard(i)
    time.sleep(0.02)
PY
}
# records URL ID...: one line per build: created started worker
records() {
  local url=$1; shift
  for id in "$@"; do curl -sS "${auth[@]}" "$url/v1/builds/$id"; echo; done
}
stop_workers() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=()
}
ms() { echo $(( $(date +%s%N) / 1000000 )); }

# run SETUP URL...: warm up, then the rounds and samples; prints one summary line.
run() {
  local setup=$1; shift
  local urls=("$@") ids id round t0 t1 i
  # Warm: every worker builds every project once (builds of a project never run at once, so
  # rounds spread them; three rounds give each of two workers each project, almost surely).
  for round in 1 2 3; do
    ids=()
    for i in $(seq -w 1 12); do ids+=("$(submit "${urls[$((10#$i % ${#urls[@]}))]}" "p$i")"); done
    wait_all "${urls[0]}" "${ids[@]}"
  done
  local total=0
  for round in $(seq 1 "$rounds"); do
    ids=()
    t0=$(ms)
    for i in $(seq -w 1 12); do ids+=("$(submit "${urls[$((10#$i % ${#urls[@]}))]}" "p$i")"); done
    wait_all "${urls[0]}" "${ids[@]}"
    t1=$(ms)
    total=$((total + t1 - t0))
    records "${urls[0]}" "${ids[@]}" >> "$work/$setup.rounds"
  done
  ids=()
  for i in $(seq 1 "$samples"); do
    sleep 0.5  # idle: every worker waits on the queue
    id=$(submit "${urls[$((i % ${#urls[@]}))]}" "p01")
    wait_all "${urls[0]}" "$id"
    ids+=("$id")
  done
  records "${urls[0]}" "${ids[@]}" > "$work/$setup.samples"
  python3 - "$setup" "$rounds" "$total" "$work/$setup.rounds" "$work/$setup.samples" <<'PY'
import json, sys, statistics
from datetime import datetime
setup, rounds, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def latencies(path):
    out, workers = [], {}
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
        out.append((t(r["started_at"]) - t(r["created_at"])).total_seconds() * 1000)
        workers[r["worker"]] = workers.get(r["worker"], 0) + 1
    return out, workers
_, spread = latencies(sys.argv[4])
claims, _ = latencies(sys.argv[5])
per_round = total / rounds
print(f"{setup:<18} 12 builds in {per_round:7.0f} ms ({12000 / per_round:5.1f} builds/s)  "
      f"claim latency p50 {statistics.median(claims):6.1f} ms, max {max(claims):6.1f} ms  "
      f"builds per worker {sorted(spread.values())}")
PY
}

echo "setup              throughput (mean of $rounds rounds)            idle claim latency ($samples samples)"
one=$(start sqlite-1)
run "sqlite, 1 worker" "$one"
stop_workers
createdb one
pg1=$(start pg-1 --database "postgres://postgres@127.0.0.1:$pg_port/one")
run "postgres, 1 worker" "$pg1"
stop_workers
createdb two
a=$(start pg-2a --database "postgres://postgres@127.0.0.1:$pg_port/two")
b=$(start pg-2b --database "postgres://postgres@127.0.0.1:$pg_port/two")
run "postgres, 2 workers" "$a" "$b"
