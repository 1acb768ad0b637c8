#!/usr/bin/env bash
# Builds the OCI registry image compose/cluster.yml runs as its artifact registry (where the
# workers push every finished build's images, `serve --artifacts`), from this host's Debian
# `docker-registry` (distribution 2.8), tagged ruchy-image-registry:dev
# (RUCHY_IMAGE_REGISTRY_IMAGE overrides the tag).
#
#   compose/build-registry-image.sh
#
# Why our own image: no registry is reachable where this stack is developed and tested, so
# `registry:2` cannot be pulled. Where one is, RUCHY_IMAGE_REGISTRY_IMAGE=registry:2 runs the
# same stack: this image keeps the official image's layout (the config at
# /etc/docker/registry/config.yml, the storage under /var/lib/registry, port 5000, `wget` on
# its PATH for the health check), and the compose file enables deletes for both through
# REGISTRY_STORAGE_DELETE_ENABLED.
#
# The image is FROM scratch: /usr/bin/docker-registry and the shared libraries it loads (its
# ldd closure: Debian builds it with cgo, so libc and the loader), busybox's `wget` (the health
# check; busybox-static, one static file), a config (filesystem storage under
# /var/lib/registry, deletes enabled so that retention can remove images later, `:5000`, a
# 5 s drain on SIGTERM) and a `registry` user (uid/gid 65532) it runs as, owning the storage
# dir (a named volume mounted there starts with that owner).
set -euo pipefail
cd "$(dirname "$0")"
image="${RUCHY_IMAGE_REGISTRY_IMAGE:-ruchy-image-registry:dev}"
registry=/usr/bin/docker-registry
if [ ! -x "$registry" ]; then
  echo "no $registry: apt-get install docker-registry" >&2
  exit 2
fi
busybox="$(command -v busybox || true)"
if [ -z "$busybox" ] || ! "$busybox" wget --help >/dev/null 2>&1; then
  echo "no busybox with wget (the health check): apt-get install busybox-static" >&2
  exit 2
fi
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
root="$context/root"
owned="$context/owned"
# Merged /usr, as on the host: /bin, /lib and /lib64 are links into /usr.
mkdir -p "$root"/usr/{bin,lib,lib64} "$root"/etc/docker/registry "$root/tmp"
ln -s usr/bin "$root/bin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
chmod 1777 "$root/tmp"

cp "$registry" "$root/usr/bin/docker-registry"
cp -L "$busybox" "$root/usr/bin/busybox"
ln -s busybox "$root/usr/bin/wget"

# The libraries, at their canonical paths (/lib/x86_64-linux-gnu/… is /usr/lib/… here too).
# busybox is static; ldd says so and lists nothing for it.
{ ldd "$registry" "$busybox" 2>/dev/null || true; } \
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
root:x:0:0:root:/root:/sbin/nologin
registry:x:65532:65532:registry:/var/lib/registry:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
registry:x:65532:
GROUP

# The official image's settings, with deletes on (the registry then takes DELETE of a
# manifest; `registry garbage-collect` frees the blobs) and a drain on SIGTERM (without
# http.draintimeout the server ignores SIGTERM and `docker stop` waits for SIGKILL).
cat > "$root/etc/docker/registry/config.yml" <<'CONFIG'
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
  draintimeout: 5s
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
CONFIG

# The storage dir, owned by the registry user (COPY --chown).
mkdir -p "$owned/var/lib/registry"
chmod 750 "$owned/var/lib/registry"

cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
COPY --chown=65532:65532 owned/ /
ENV PATH=/usr/bin:/bin
USER 65532:65532
VOLUME /var/lib/registry
EXPOSE 5000
# As registry:2: `docker run IMAGE garbage-collect /etc/docker/registry/config.yml` runs the
# collector on the same storage.
ENTRYPOINT ["/usr/bin/docker-registry"]
CMD ["serve", "/etc/docker/registry/config.yml"]
DOCKERFILE
# The classic builder: the engine here has no BuildKit client plugin.
DOCKER_BUILDKIT=0 docker build --quiet --tag "$image" "$context" >/dev/null 2>&1 \
  || DOCKER_BUILDKIT=0 docker build --tag "$image" "$context"
version="$(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null || echo '?')"
echo "built $image (docker-registry $version from this host)"
