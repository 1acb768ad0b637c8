#!/usr/bin/env bash
# What sharing one PostgreSQL queue costs: the same builds through one `serve` on SQLite, one
# worker on PostgreSQL, and two workers on PostgreSQL, side by side in one run.
#
# For each setup: 12 projects (copies of examples/fibonacci.rs under 12 names) are built
# until every worker has them warm, then ROUNDS times all 12 are submitted at once and timed
# until the last ends (no-change builds: the queue, the API and the workers are what is
# measured, not the compiler), and then the claim latency (created -> started, from the
# records) of SAMPLES single builds sent to an idle service, to each worker in turn (so under
# PostgreSQL the worker that claims may be another one, woken by LISTEN/NOTIFY).
# Both workers share this machine's cores: expect no speed-up, only the queue's overhead.
#
#   benchmarks/workers.sh [ROUNDS] [SAMPLES]     (default 3 and 10)
rounds=${1:-3}
samples=${2:-10}
# The release binary, the builder image, $work, and `cleanup` (this run's volumes and $work).
source "$(dirname "$0")/lib.sh"
chmod 755 "$work"
pids=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_workers() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=()
}
stop_all() {
  stop_workers
  [ -d "$work/pg" ] && as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
  cleanup
}
trap stop_all EXIT

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

# start NAME [--database URL]: a worker; its URL in $url (not a $(…) subshell, which would
# keep the worker's PID from this shell's list).
start() {
  local name=$1; shift
  "$RI" serve --data-dir "$work/$name" --listen 127.0.0.1:0 --token-file "$work/token" \
    --builder-image "$BUILDER" --worker-name "$name" "$@" > "$work/$name.out" 2> "$work/$name.err" &
  pids+=($!)
  for _ in $(seq 1 100); do grep -q listening "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  url=$(grep -o 'http://[0-9.:]*' "$work/$name.out")
}
# measure SETUP URL...: warm-up, the timed rounds and the claim samples, from one Python
# process (so the client's own start-up is not what is measured); one summary line.
measure() {
  python3 - "$(cat "$work/token")" "$work/src" "$rounds" "$samples" "$@" <<'PY'
import json, statistics, sys, time, urllib.request
from datetime import datetime
token, src, rounds, samples, setup, urls = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6:]
projects = [f"p{i:02d}" for i in range(1, 13)]
bodies = {p: open(f"{src}/{p}.tar.gz", "rb").read() for p in projects}
def call(url, data=None):
    req = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {token}"})
    return json.load(urllib.request.urlopen(req))
def submit(n, project):
    return call(f"{urls[n % len(urls)]}/v1/builds?optimize=aggressive", bodies[project])["id"]
def wait(ids):
    done, pending = {}, list(ids)
    while pending:
        for i in list(pending):
            r = call(f"{urls[0]}/v1/builds/{i}")
            if r["status"] not in ("queued", "working"):
                if r["status"] != "success":
                    sys.exit(f"build {i}: {r['status']} {r.get('error')}")
                done[i] = r
                pending.remove(i)
        time.sleep(0.01)
    return [done[i] for i in ids]
def t(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))
def ms(a, b):
    return (t(b) - t(a)).total_seconds() * 1000
# Warm: until every worker has built every project (which worker takes a build is the
# queue's choice), so each timed build is a no-change one wherever it runs.
warm = set()
for _ in range(20):
    for r in wait([submit(n, p) for n, p in enumerate(projects)]):
        warm.add((r["worker"], r["project"]))
    if len(warm) == len(urls) * len(projects):
        break
else:
    print(f"warning: {setup}: not every worker built every project while warming up", file=sys.stderr)
spans, builds, spread = [], [], {}
for _ in range(rounds):
    records = wait([submit(n, p) for n, p in enumerate(projects)])
    spans.append(ms(min(r["created_at"] for r in records), max(r["finished_at"] for r in records)))
    for r in records:
        builds.append(ms(r["started_at"], r["finished_at"]))
        spread[r["worker"]] = spread.get(r["worker"], 0) + 1
claims = []
for n in range(samples):
    time.sleep(0.5)  # idle: every worker waits on the queue
    (r,) = wait([submit(n, "p01")])
    claims.append(ms(r["created_at"], r["started_at"]))
span = statistics.mean(spans)
print(f"{setup:<20} 12 builds in {span:5.0f} ms ({12000 / span:4.1f}/s), "
      f"each {statistics.median(builds):4.0f} ms (p50, max {max(builds):4.0f})  "
      f"claim p50 {statistics.median(claims):4.1f} ms, max {max(claims):4.1f} ms  "
      f"per worker {sorted(spread.values())}")
PY
}

echo "throughput: mean of $rounds rounds of 12 builds sent at once (first created -> last finished, the"
echo "  service's own times), and each build's time (started -> finished)"
echo "claim: created -> started of $samples single builds sent to an idle service"
start sqlite-1
measure "sqlite, 1 worker" "$url"
stop_workers
createdb one
start pg-1 --database "postgres://postgres@127.0.0.1:$pg_port/one"
measure "postgres, 1 worker" "$url"
stop_workers
createdb two
start pg-2a --database "postgres://postgres@127.0.0.1:$pg_port/two"
a=$url
start pg-2b --database "postgres://postgres@127.0.0.1:$pg_port/two"
measure "postgres, 2 workers" "$a" "$url"
