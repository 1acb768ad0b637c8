#!/usr/bin/env bash
# What keeping images in an artifact registry (`serve --artifacts`) costs, in one run:
#
# (a) handover: two `serve` workers on one PostgreSQL with their images in a registry
#     (Debian's docker-registry, of this run's own); SAMPLES builds of a small program, each
#     submitted to one worker and, the moment its record says which worker builds it, the other
#     one is asked for the image until it answers 200: the time from the record's finished_at
#     (success, on the builder) to that 200 (headers received, on the other worker).
# (b) download throughput of GET /v1/builds/{id}/image, the same image (a 24 MiB binary:
#     random bytes the program embeds, so the layer does not compress), RUNS times each,
#     interleaved: streamed from the artifact registry by a worker (PostgreSQL + --artifacts)
#     against read from the data dir of a SQLite `serve` without --artifacts. MB/s and the
#     ratio registry / data dir.
#
# Everything runs on this machine (loopback): the registry's disk and the service's share it.
#
#   benchmarks/artifacts.sh [SAMPLES] [RUNS]     (default 10 and 10)
samples=${1:-10}
runs=${2:-10}
# The release binary, the builder image, $work, and `cleanup` (this run's volumes and $work).
source "$(dirname "$0")/lib.sh"
chmod 755 "$work"
pids=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  [ -d "$work/pg" ] && as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
  cleanup
}
trap stop_all EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A PostgreSQL cluster and a registry of this run's own.
mkdir -p "$work/pg" && [ "$(id -u)" = 0 ] && chown postgres "$work/pg"
as_pg "$pg_bin/initdb" --auth=trust --username=postgres --no-sync -D "$work/pg/data" >/dev/null
pg_port=$(free_port)
as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w start \
  -o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$work/pg" >/dev/null
"$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres bench
reg_port=$(free_port)
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$work/registry" "$reg_port" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$reg_port/v2/" >/dev/null && break; sleep 0.1; done

# The programs: a small one for the handover, one with 24 MiB of random bytes for throughput.
mkdir -p "$work/src/small" "$work/src/big/src"
cp examples/fibonacci.rs "$work/src/small/small.rs"
tar -C "$work/src/small" -czf "$work/small.tar.gz" small.rs
head -c $((24 << 20)) /dev/urandom > "$work/src/big/src/blob.bin"
printf '[package]\nname = "big"\nversion = "0.1.0"\nedition = "2021"\n[workspace]\n' > "$work/src/big/Cargo.toml"
cat > "$work/src/big/src/main.rs" <<'RS'
static BLOB: &[u8] = include_bytes!("blob.bin");
fn main() {
    let blob = std::hint::black_box(BLOB);
    println!("{} bytes, last {}", blob.len(), blob[blob.len() - 1]);
}
RS
tar -C "$work/src/big" -czf "$work/big.tar.gz" .

head -c 24 /dev/urandom | base64 > "$work/token"
# start NAME ARGS...: a worker; its URL in $url.
start() {
  local name=$1; shift
  "$RI" serve --data-dir "$work/$name" --listen 127.0.0.1:0 --token-file "$work/token" \
    --builder-image "$BUILDER" --worker-name "$name" "$@" > "$work/$name.out" 2> "$work/$name.err" &
  pids+=($!)
  for _ in $(seq 1 300); do grep -q listening "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  url=$(grep -o 'http://[0-9.:]*' "$work/$name.out") || { cat "$work/$name.err" >&2; exit 1; }
}
database="postgres://postgres@127.0.0.1:$pg_port/bench"
repository="127.0.0.1:$reg_port/builds"
start worker-a --database "$database" --artifacts "$repository"
a=$url
start worker-b --database "$database" --artifacts "$repository"
b=$url
start disk
disk=$url

python3 - "$(cat "$work/token")" "$work" "$samples" "$runs" "$a" "$b" "$disk" <<'PY'
import json, statistics, sys, time, urllib.request, urllib.error
from datetime import datetime, timezone
token, work, samples, runs, a, b, disk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:]
def request(url, data=None):
    return urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {token}"})
def call(url, data=None):
    return json.load(urllib.request.urlopen(request(url, data)))
def this_worker(url):
    return next(w["id"] for w in call(f"{url}/v1/workers")["workers"] if w["this"])
def submit(url, body, query):
    return call(f"{url}/v1/builds?{query}", body)["id"]
def wait(url, id):
    while True:
        r = call(f"{url}/v1/builds/{id}")
        if r["status"] not in ("queued", "working"):
            if r["status"] != "success":
                sys.exit(f"build {id}: {r['status']} {r.get('error')}")
            return r
        time.sleep(0.05)
def stamp(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

# (a) handover
ids = {this_worker(a): a, this_worker(b): b}
small = open(f"{work}/small.tar.gz", "rb").read()
wait(a, submit(a, small, "optimize=aggressive"))  # warm: the first compile is not measured
handover = []
for n in range(samples):
    id = submit([a, b][n % 2], small, "optimize=aggressive")
    while True:  # who builds it
        r = call(f"{a}/v1/builds/{id}")
        if r["worker"]:
            break
        time.sleep(0.002)
    other = next(url for w, url in ids.items() if w != r["worker"])
    while True:
        try:
            response = urllib.request.urlopen(request(f"{other}/v1/builds/{id}/image"))
            seen = time.time()
            response.read()
            break
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise
            time.sleep(0.002)
    finished = wait(a, id)["finished_at"]
    handover.append((seen - stamp(finished)) * 1000)
print(f"(a) success on one worker -> image downloadable on the other: p50 {statistics.median(handover):.0f} ms, "
      f"min {min(handover):.0f}, max {max(handover):.0f} ({samples} builds)")

# (b) throughput: the same image from the registry (worker a) and from the data dir (disk)
big = open(f"{work}/big.tar.gz", "rb").read()
from_registry = wait(a, submit(a, big, "optimize=aggressive"))
from_disk = wait(disk, submit(disk, big, "optimize=aggressive"))
digest = from_registry["results"][0]["image"]["digest"]
assert digest == from_disk["results"][0]["image"]["digest"], "the same image on both"
def download(url, id):
    started = time.time()
    response = urllib.request.urlopen(request(f"{url}/v1/builds/{id}/image"))
    size = 0
    while chunk := response.read(1 << 20):
        size += len(chunk)
    return size, time.time() - started
speeds = {"registry": [], "data dir": []}
sizes = set()
for _ in range(runs):
    for name, url, id in (("registry", a, from_registry["id"]), ("data dir", disk, from_disk["id"])):
        size, seconds = download(url, id)
        sizes.add(size)
        speeds[name].append(size / seconds / 1e6)
(size,) = sizes if len(sizes) == 1 else (max(sizes),)
reg, dd = statistics.median(speeds["registry"]), statistics.median(speeds["data dir"])
print(f"(b) GET /image of {size / 1e6:.1f} MB ({digest[:19]}…), median of {runs}: "
      f"artifact registry {reg:.0f} MB/s (min {min(speeds['registry']):.0f}, max {max(speeds['registry']):.0f}), "
      f"data dir {dd:.0f} MB/s (min {min(speeds['data dir']):.0f}, max {max(speeds['data dir']):.0f}); "
      f"registry / data dir {reg / dd:.2f}")
if len(sizes) != 1:
    print(f"    note: the archives differ in size: {sorted(sizes)}")
PY
