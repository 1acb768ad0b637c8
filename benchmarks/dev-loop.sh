#!/usr/bin/env bash
# The inner loop, measured side by side in one run (medians of RUNS, each a one-line edit):
#
#   1. a `.ruchy` edit to an image: `ruchy compile --optimize PRESET` alone (a bare binary, no
#      image) beside `ruchy-image build -O PRESET --oci-layout` with the docker builder and with
#      `--builder local`, with where the build's time goes (compile, assemble, the rest);
#   2. an edit to an answer over HTTP: `ruchy-image dev examples/http-server.rs` (docker and
#      local builders) from the save to the first `GET /` that returns the new greeting, beside
#      host cargo's incremental build of the same edit with the preset's profile (no image).
#
#   benchmarks/dev-loop.sh            (needs an engine and `ruchy`; RUNS=5, PRESET=aggressive)
#
# Goals (issue #34): ruchy-image build ≤ 1.15 × ruchy compile; dev's answer ≤ host build + 1 s.
source "$(dirname "$0")/lib.sh"
RUNS="${RUNS:-5}"
repo=$(pwd)
app=dev # names this run's images (lib.sh's tag)
# The other compiler on this machine (Debian's rustc-web beside rustup's): a local build with
# it shows what the compiler alone changes. Whichever local build has the builder image's
# compiler shows what the container itself costs.
OTHER_RUSTC="${OTHER_RUSTC:-/usr/bin/rustc}"
builder_rustc=$(docker run --rm --entrypoint rustc "$BUILDER" -V)
export RUCHY_IMAGE_TARGET_VOLUME="ruchy-image-bench-$$-dev"
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { echo "scale=2; $1 / $2" | bc; }
declare -A times

# --- 1. a .ruchy edit -------------------------------------------------------------------
mkdir -p "$work/ruchy"
cp examples/fibonacci.ruchy "$work/ruchy/fib.ruchy"
cd "$work/ruchy"
n=0
edit_ruchy() { n=$((n + 1)); printf '\nfun edited_%s() -> i32 { %s }\n' "$n" "$n" >> fib.ruchy; }
ruchy_compile() { ruchy compile fib.ruchy --optimize "$PRESET" -o fib-bin; }
ri_docker() {
  "$RI" build fib.ruchy -O "$PRESET" --builder docker --builder-image "$BUILDER" \
    --oci-layout out-docker --json docker.json -q
}
ri_local() { "$RI" build fib.ruchy -O "$PRESET" --builder local --oci-layout out-local --json local.json -q; }
ri_other_rustc() {
  RUSTC="$OTHER_RUSTC" "$RI" build fib.ruchy -O "$PRESET" --builder local \
    --oci-layout out-other-rustc --json other_rustc.json -q
}
ways="ruchy_compile ri_docker ri_local"
[ -x "$OTHER_RUSTC" ] && [ "$("$OTHER_RUSTC" -V)" != "$(rustc -V)" ] && ways+=" ri_other_rustc"
same_as_builder=
if [ "$(rustc -V)" = "$builder_rustc" ]; then
  same_as_builder=ri_local
elif [[ " $ways " == *" ri_other_rustc "* ]] && [ "$("$OTHER_RUSTC" -V)" = "$builder_rustc" ]; then
  same_as_builder=ri_other_rustc
fi
for way in $ways; do edit_ruchy; seconds "$way" >/dev/null; done # warm
for _ in $(seq "$RUNS"); do
  for way in $ways; do
    edit_ruchy
    times[$way]+="$(seconds "$way") "
    case $way in
      ri_*) json=${way#ri_}.json
        times[${way}_compile]+="$(sed -n 's/.*"compile_time_ms": \([0-9]*\).*/\1/p' "$json") "
        times[${way}_assemble]+="$(sed -n 's/.*"assemble_time_ms": \([0-9]*\).*/\1/p' "$json") " ;;
    esac
  done
done
m() { echo "${times[$1]}" | tr ' ' '\n' | grep . | median; }
base=$(m ruchy_compile)
echo "## a .ruchy edit to an image ($PRESET, median of $RUNS)"
echo
echo "| way | wall | ratio to ruchy compile | compile | assemble | rest |"
echo "|---|---|---|---|---|---|"
printf '| ruchy compile (bare binary) | %.2f s | 1.00 | | | |\n' "$base"
for way in ${ways#ruchy_compile }; do
  wall=$(m "$way"); compile=$(m "${way}_compile"); assemble=$(m "${way}_assemble")
  rest=$(echo "$wall * 1000 - $compile - $assemble" | bc)
  case $way in
    ri_docker) name="docker builder ($BUILDER)" ;;
    ri_local) name="local builder ($(rustc --version | cut -d' ' -f1-2))" ;;
    ri_other_rustc) name="local builder with $OTHER_RUSTC ($("$OTHER_RUSTC" --version | cut -d' ' -f1-2))" ;;
  esac
  printf '| ruchy-image build, %s | %.2f s | %s | %d ms | %d ms | %.0f ms |\n' \
    "$name" "$wall" "$(ratio "$wall" "$base")" "$compile" "$assemble" "$rest"
done
if [ -n "$same_as_builder" ]; then
  echo
  echo "The docker builder ($builder_rustc) against the same compiler on the host: $(ratio "$(m ri_docker)" "$(m "$same_as_builder")")×"
fi

# --- 2. an edit to an answer --------------------------------------------------------------
mkdir -p "$work/http"
cd "$work/http"
cp "$repo/examples/http-server.rs" .
# A request caught in a swap (accepted by the engine's proxy before the new server listens)
# waits for its timeout: 0.1 s is plenty for a loopback answer and little to add.
greeting() { curl -s --max-time 0.1 "http://127.0.0.1:$1/" || true; }
# set_greeting TEXT FILE: what `GET /` answers.
set_greeting() { sed -i "s|\"/\" => (\"200 OK\", \"[^\"]*\\\\n\"|\"/\" => (\"200 OK\", \"$1\\\\n\"|" "$2"; }
# answer_time PORT TEXT: seconds from now until GET / on PORT answers TEXT.
answer_time() {
  local start
  start=$(now)
  until [ "$(greeting "$1")" = "$2" ]; do
    sleep 0.05
    if [ "$(echo "$(now) - $start > 120" | bc)" = 1 ]; then echo "no answer '$2' on $1" >&2; return 1; fi
  done
  echo "$(now) - $start" | bc
}
dev_pids=()
stop_devs() { for pid in "${dev_pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; wait "$pid" || true; done; }
trap 'stop_devs; cleanup' EXIT
for builder in docker local; do
  mkdir -p "$builder"
  cp http-server.rs "$builder/"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  eval "port_$builder=$port"
  "$RI" dev "$builder/http-server.rs" --builder "$builder" --builder-image "$BUILDER" \
    -O "$PRESET" --tag "$(tag "dev-$builder")" --publish "127.0.0.1:$port:8080" --json "$builder/dev.json" \
    >"$work/dev-$builder.out" 2>"$work/dev-$builder.err" &
  dev_pids+=($!)
  made_images+=("$(tag "dev-$builder")")
  answer_time "$port" "Hello from ruchy-image!" >/dev/null
done
# Host cargo: the same file as a project, with the preset's profile, for the host's target.
mkdir -p host/src
cp http-server.rs host/src/main.rs
cat > host/Cargo.toml <<EOF
[package]
name = "http-server"
version = "0.1.0"
edition = "2021"
[workspace]
[profile.release]
opt-level = 3
lto = "fat"
codegen-units = 1
strip = true
EOF
(cd host && cargo build --release -q)
for i in $(seq "$RUNS"); do
  for builder in docker local; do
    set_greeting "Hello $builder $i" "$builder/http-server.rs"
    port_var="port_$builder"
    times[dev_$builder]+="$(answer_time "${!port_var}" "Hello $builder $i") "
    times[dev_${builder}_compile]+="$(sed -n 's/.*"compile_time_ms": \([0-9]*\).*/\1/p' "$builder/dev.json") "
  done
  set_greeting "Hello host $i" host/src/main.rs
  times[host]+="$(seconds cargo build --release -q --manifest-path host/Cargo.toml) "
done
host=$(m host)
echo
echo "## an edit to a new answer over HTTP (examples/http-server.rs, $PRESET, median of $RUNS)"
echo
echo "| way | edit → answer | minus host build | dev's build and swap | cargo in it |"
echo "|---|---|---|---|---|"
printf '| host cargo build --release (incremental, no image, no restart) | %.2f s | | | |\n' "$host"
for builder in docker local; do
  t=$(m "dev_$builder")
  # What dev itself says of each rebuild: build and swap (`running as … (X s)`), and the
  # compile's own time in it (the record's compile_time_ms, in the --json file).
  swap=$(grep -o 'running as container [0-9a-f]* ([0-9.]* s)' "$work/dev-$builder.err" | tail -n "$RUNS" \
    | sed 's/.*(\([0-9.]*\) s)/\1/' | median)
  compile=$(echo "${times[dev_${builder}_compile]}" | tr ' ' '\n' | grep . | median)
  printf '| ruchy-image dev, %s builder | %.2f s | %+.2f s | %.2f s | %.2f s |\n' "$builder" "$t" \
    "$(echo "$t - $host" | bc)" "$swap" "$(echo "$compile / 1000" | bc -l)"
done
stop_devs
dev_pids=()
