#!/usr/bin/env bash
# Builds the PostgreSQL image compose/cluster.yml runs, from this host's Debian PostgreSQL,
# tagged ruchy-image-postgres:dev (RUCHY_IMAGE_POSTGRES_IMAGE overrides the tag, PG_VERSION the
# version under /usr/lib/postgresql, default the newest installed).
#
#   compose/build-postgres-image.sh
#
# Why our own image: no registry is reachable where this stack is developed and tested, so
# `postgres:15` cannot be pulled. Where one is, RUCHY_IMAGE_POSTGRES_IMAGE=postgres:15 runs the
# same stack: this image takes the official image's settings (POSTGRES_USER, POSTGRES_DB,
# POSTGRES_PASSWORD_FILE, PGDATA=/var/lib/postgresql/data) and has pg_isready on its PATH.
#
# The image is FROM scratch: the server, initdb, pg_ctl, pg_isready and psql, the extension
# modules (not the LLVM JIT: 26 MB of bitcode and a 100 MB libLLVM for nothing here, jit=off),
# the share dir, the time zones, the shared libraries all of them load (their ldd closure),
# dash and the five programs the entrypoint runs, and a `postgres` user (uid/gid 70). Its
# entrypoint starts as root, reads the password secret (whatever its owner and mode), makes the
# cluster on an empty data dir and runs the server as `postgres`.
set -euo pipefail
cd "$(dirname "$0")"
image="${RUCHY_IMAGE_POSTGRES_IMAGE:-ruchy-image-postgres:dev}"
version="${PG_VERSION:-$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)}"
pg="/usr/lib/postgresql/$version"
if [ -z "$version" ] || [ ! -x "$pg/bin/postgres" ] || [ ! -d "/usr/share/postgresql/$version" ]; then
  echo "no PostgreSQL server under /usr/lib/postgresql: apt-get install postgresql" >&2
  exit 2
fi
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
root="$context/root"
owned="$context/owned"
# Merged /usr, as on the host: /bin, /lib and /lib64 are links into /usr.
mkdir -p "$root"/usr/{bin,lib,lib64,local/bin} "$root"/{etc,tmp} "$root/usr/lib/postgresql/$version"/{bin,lib}
ln -s usr/bin "$root/bin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
chmod 1777 "$root/tmp"

programs=()
for program in postgres initdb pg_ctl pg_isready psql; do
  cp "$pg/bin/$program" "$root$pg/bin/"
  programs+=("$pg/bin/$program")
done
for module in "$pg"/lib/*.so; do
  case "$(basename "$module")" in llvmjit*) continue ;; esac
  cp "$module" "$root$pg/lib/"
  programs+=("$module")
done
for program in sh mkdir chown chmod rm setpriv; do
  path="$(command -v "$program")"
  cp -L "$path" "$root/usr/bin/$program"
  programs+=("$path")
done
mkdir -p "$root/usr/share/postgresql"
cp -a "/usr/share/postgresql/$version" "$root/usr/share/postgresql/"
cp -a /usr/share/zoneinfo "$root/usr/share/"

# The libraries, at their canonical paths (/lib/x86_64-linux-gnu/… is /usr/lib/… here too).
{ ldd "${programs[@]}" 2>/dev/null || true; } \
  | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u \
  | while read -r lib; do
      dir="$(readlink -f "$(dirname "$lib")")"
      mkdir -p "$root$dir"
      cp -L "$lib" "$root$dir/$(basename "$lib")"
    done
if [ ! -e "$root/usr/lib64/ld-linux-x86-64.so.2" ] && [ -e /lib64/ld-linux-x86-64.so.2 ]; then
  cp -L /lib64/ld-linux-x86-64.so.2 "$root/usr/lib64/"
fi

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
postgres:x:70:70:PostgreSQL:/var/lib/postgresql:/bin/sh
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
postgres:x:70:
GROUP

# The dirs the server writes, owned by postgres (COPY --chown): its home with the data dir (a
# named volume mounted there starts with this owner and mode), and the socket dir.
mkdir -p "$owned/var/lib/postgresql/data" "$owned/var/run/postgresql"
chmod 700 "$owned/var/lib/postgresql/data"
chmod 2775 "$owned/var/run/postgresql"

cp postgres-entrypoint.sh "$root/usr/local/bin/docker-entrypoint.sh"
chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"

cat > "$context/Dockerfile" <<DOCKERFILE
FROM scratch
COPY root/ /
COPY --chown=70:70 owned/ /
ENV PATH=$pg/bin:/usr/local/bin:/usr/bin:/bin \\
    PGDATA=/var/lib/postgresql/data \\
    TZ=UTC
VOLUME /var/lib/postgresql/data
EXPOSE 5432
# SIGINT: a fast shutdown (SIGTERM would wait for every client to disconnect).
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
DOCKERFILE
# The classic builder: the engine here has no BuildKit client plugin.
DOCKER_BUILDKIT=0 docker build --quiet --tag "$image" "$context" >/dev/null 2>&1 \
  || DOCKER_BUILDKIT=0 docker build --tag "$image" "$context"
echo "built $image (PostgreSQL $version from this host)"
