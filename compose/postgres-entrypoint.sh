#!/bin/sh
# The entrypoint of compose/build-postgres-image.sh's image, a small subset of the official
# postgres image's (same variables, so compose/cluster.yml runs either):
#
#   POSTGRES_PASSWORD_FILE  the superuser's password, first line (a compose secret); required
#                           to make the cluster: there is no trust or passwordless access
#   POSTGRES_USER           the superuser (default postgres)
#   POSTGRES_DB             a database made with the cluster (default: POSTGRES_USER's name)
#   PGDATA                  the data dir (default /var/lib/postgresql/data)
#
# Started as root: it reads the secret whatever its owner and mode (a file secret is a bind
# mount of the host's file), gives the data dir to `postgres` and runs everything else as that
# user (initdb and the server refuse root). On an empty data dir it runs initdb with
# scram-sha-256 for every connection, listen_addresses='*' and a pg_hba line for the networks
# the container is on (`samenet`: the compose network; the port is not published), then makes
# POSTGRES_DB in single-user mode. A data dir that has a cluster is used as it is.
# initdb's "locale: not found" and "no usable system locales" are expected: the image has no
# locales, the cluster is C with UTF8.
set -eu

if [ "${1:-postgres}" != postgres ]; then
  exec "$@"
fi
shift 2>/dev/null || true
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
as_postgres() { setpriv --reuid=70 --regid=70 --clear-groups "$@"; }

if [ ! -O / ]; then
  echo "error: start this image as root (it drops to the postgres user itself)" >&2
  exit 1
fi
mkdir -p "$PGDATA" /var/run/postgresql
chown 70:70 "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  case "$user$db" in
    *[!A-Za-z0-9_]*)
      echo "error: POSTGRES_USER and POSTGRES_DB: letters, digits and _ only" >&2
      exit 1 ;;
  esac
  if [ -z "${POSTGRES_PASSWORD_FILE:-}" ] || [ ! -s "$POSTGRES_PASSWORD_FILE" ]; then
    echo "error: POSTGRES_PASSWORD_FILE must name a file holding the password (a secret)" >&2
    exit 1
  fi
  IFS= read -r password < "$POSTGRES_PASSWORD_FILE" || [ -n "$password" ]
  pwfile=/tmp/pwfile
  (umask 077 && printf '%s\n' "$password" > "$pwfile")
  chown 70:70 "$pwfile"
  unset password
  as_postgres initdb --username="$user" --pwfile="$pwfile" --auth=scram-sha-256 \
    --encoding=UTF8 --no-locale -D "$PGDATA" >/dev/null
  rm -f "$pwfile"
  printf '%s\n' "listen_addresses = '*'" "jit = off" >> "$PGDATA/postgresql.conf"
  printf '%s\n' "host all all samenet scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    printf 'CREATE DATABASE "%s" OWNER "%s"\n' "$db" "$user" \
      | as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "made the cluster in $PGDATA: user $user, database $db"
fi

exec setpriv --reuid=70 --regid=70 --clear-groups postgres -D "$PGDATA" "$@"
