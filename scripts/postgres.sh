#!/usr/bin/env bash
# A real local PostgreSQL for the results-store tests: 127.0.0.1 only, trust auth for the
# role "edgernn", which owns the database "edgernn" and may create more (one per test).
#
#   scripts/postgres.sh start    # initdb on first use, start; prints the URL (idempotent)
#   scripts/postgres.sh url      # postgresql://edgernn@127.0.0.1:55432/edgernn
#   scripts/postgres.sh status   # "running <url>" (exit 0) or "stopped" (exit 1)
#   scripts/postgres.sh stop     # stop the server (idempotent); the data dir stays
#
# Environment: EDGERNN_PG_PORT (default 55432), EDGERNN_PG_DIR (default /var/tmp/edgernn-pg).
# Needs root (the server runs as the Debian "postgres" user) and the server binaries
# (/usr/lib/postgresql/*/bin, package postgresql). Without them: one line "SKIP: <reason>"
# and exit 3. A test bed: fsync is off, data may be lost on a host crash.
set -euo pipefail

PORT=${EDGERNN_PG_PORT:-55432}
DIR=${EDGERNN_PG_DIR:-/var/tmp/edgernn-pg}
DATA=$DIR/data
LOG=$DIR/server.log
URL="postgresql://edgernn@127.0.0.1:$PORT/edgernn"

skip() { echo "SKIP: $*"; exit 3; }

find_bin() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && [ -x "$d/psql" ] || continue
    if [ -z "$best" ] || [ "$(basename "$(dirname "$d")")" -gt "$(basename "$(dirname "$best")")" ] 2>/dev/null; then
      best=$d
    fi
  done
  echo "$best"
}

as_pg() { (cd / && runuser -u postgres -- "$@"); }

prepare() {
  [ "$(id -u)" = 0 ] || skip "postgres.sh needs root (the server runs as the postgres user)"
  BIN=$(find_bin)
  [ -n "$BIN" ] || skip "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
  getent passwd postgres >/dev/null || skip "no postgres user (install the Debian postgresql package)"
  command -v runuser >/dev/null || skip "runuser not found"
}

running() { [ -f "$DATA/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

# the URL of the running server (its port may differ from $PORT if started with another one)
live_url() {
  local p
  p=$(sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true)
  echo "postgresql://edgernn@127.0.0.1:${p:-$PORT}/edgernn"
}

psql_admin() { as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

init() {
  mkdir -p "$DIR"
  chown postgres: "$DIR"
  chmod 700 "$DIR"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=peer --auth-host=reject \
      -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
      || as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=peer --auth-host=reject \
           -E UTF8 --locale=C >"$DIR/initdb.log" 2>&1 \
      || { echo "postgres.sh: initdb failed, see $DIR/initdb.log" >&2; tail -5 "$DIR/initdb.log" >&2; exit 1; }
    cat > "$DATA/pg_hba.conf" <<'EOF'
# edgernn test bed: trust on loopback for the test role and the admin
local all postgres                peer
host  all edgernn  127.0.0.1/32   trust
host  all postgres 127.0.0.1/32   trust
EOF
    cat >> "$DATA/postgresql.conf" <<EOF
# edgernn test bed
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi
}

start() {
  prepare
  if running; then
    live_url
    exit 0
  fi
  init
  if ! as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 -o "-p $PORT" start >/dev/null 2>&1; then
    echo "postgres.sh: server did not start on 127.0.0.1:$PORT, see $LOG:" >&2
    tail -5 "$LOG" >&2 || true
    exit 1
  fi
  psql_admin <<'EOF'
SELECT 'CREATE ROLE edgernn LOGIN CREATEDB'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'edgernn') \gexec
SELECT 'CREATE DATABASE edgernn OWNER edgernn'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'edgernn') \gexec
EOF
  echo "$URL"
}

case "${1:-}" in
  start) start ;;
  url) echo "$URL" ;;
  status)
    prepare
    if running; then echo "running $(live_url)"; else echo "stopped"; exit 1; fi ;;
  stop)
    prepare
    if running; then as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; fi
    echo "stopped" ;;
  *) echo "usage: $0 start|stop|url|status" >&2; exit 2 ;;
esac
