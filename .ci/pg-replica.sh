#!/usr/bin/env bash
# A PostgreSQL primary and a streaming replica of it, on loopback, for the
# scalekit-replica tests. Idempotent: creates what is missing, starts what is
# down, resumes WAL replay if an earlier run left it paused, and prints the
# two URLs as `export` lines (eval them, as .ci/run does).
#
#   primary: cluster scalekit_primary on 127.0.0.1:5434 (trust on loopback)
#   replica: cluster scalekit_replica on 127.0.0.1:5433, made by pg_basebackup
#            from the primary, hot standby, streaming
#
# The machine's main cluster (5432) is left untouched. Ports can be changed with
# SCALEKIT_PG_PRIMARY_PORT / SCALEKIT_PG_REPLICA_PORT.
set -euo pipefail

PRIMARY=scalekit_primary
REPLICA=scalekit_replica
PPORT="${SCALEKIT_PG_PRIMARY_PORT:-5434}"
RPORT="${SCALEKIT_PG_REPLICA_PORT:-5433}"
DB=scalekit_replica

log() { printf '%s\n' "$*" >&2; }
die() { printf 'pg-replica: %s\n' "$*" >&2; exit 1; }

if ! command -v pg_createcluster >/dev/null || ! command -v pg_basebackup >/dev/null; then
  log "installing PostgreSQL"
  (apt-get update && apt-get install -y postgresql postgresql-contrib) >&2 || die "cannot install postgresql"
fi
VER="$(ls /usr/lib/postgresql | sort -n | tail -n 1)"
[ -n "$VER" ] || die "no PostgreSQL server version under /usr/lib/postgresql"
BIN="/usr/lib/postgresql/$VER/bin"
as_pg() { runuser -u postgres -- "$@"; }
exists() { pg_lsclusters -h | awk -v v="$VER" -v n="$1" '$1 == v && $2 == n { found = 1 } END { exit !found }'; }
online() { pg_lsclusters -h | awk -v v="$VER" -v n="$1" '$1 == v && $2 == n && $4 ~ /online/ { found = 1 } END { exit !found }'; }
start() { online "$1" || pg_ctlcluster "$VER" "$1" start >&2 || die "cannot start cluster $1"; }
wait_ready() {
  for _ in $(seq 1 100); do
    as_pg "$BIN/pg_isready" -q -h 127.0.0.1 -p "$1" && return 0
    sleep 0.1
  done
  die "nothing answers on 127.0.0.1:$1"
}
psql_at() { local port="$1"; shift; as_pg psql -X -q -At -h 127.0.0.1 -p "$port" -U postgres "$@"; }

trust_loopback() {
  local hba="/etc/postgresql/$VER/$1/pg_hba.conf"
  cat >"$hba" <<HBA
# scalekit CI: trust on loopback only (see .ci/pg-replica.sh)
local   all          all                 trust
host    all          all   127.0.0.1/32  trust
local   replication  all                 trust
host    replication  all   127.0.0.1/32  trust
HBA
  chown postgres:postgres "$hba"
}

# The primary.
if ! exists "$PRIMARY"; then
  log "creating cluster $VER/$PRIMARY on port $PPORT"
  pg_createcluster "$VER" "$PRIMARY" -p "$PPORT" >&2 -- --auth=trust --no-sync
  conf="/etc/postgresql/$VER/$PRIMARY/conf.d/scalekit.conf"
  cat >"$conf" <<CONF
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
wal_keep_size = '256MB'
fsync = off
synchronous_commit = on
shared_buffers = '32MB'
CONF
  chown postgres:postgres "$conf"
  trust_loopback "$PRIMARY"
fi
start "$PRIMARY"
wait_ready "$PPORT"
if [ "$(psql_at "$PPORT" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  psql_at "$PPORT" -d postgres -c "CREATE DATABASE $DB" >&2
fi

# The replica: a base backup of the primary, streaming from it.
if ! exists "$REPLICA"; then
  log "creating replica $VER/$REPLICA on port $RPORT from 127.0.0.1:$PPORT"
  pg_createcluster "$VER" "$REPLICA" -p "$RPORT" >&2
  data="$(pg_lsclusters -h | awk -v v="$VER" -v n="$REPLICA" '$1 == v && $2 == n { print $6 }')"
  [ -n "$data" ] || die "no data directory for $REPLICA"
  rm -rf "${data:?}"/*
  as_pg pg_basebackup -h 127.0.0.1 -p "$PPORT" -U postgres -D "$data" -X stream -R -c fast >&2 \
    || die "pg_basebackup from the primary failed"
  conf="/etc/postgresql/$VER/$REPLICA/conf.d/scalekit.conf"
  cat >"$conf" <<CONF
listen_addresses = '127.0.0.1'
hot_standby = on
fsync = off
shared_buffers = '32MB'
CONF
  chown postgres:postgres "$conf"
  trust_loopback "$REPLICA"
fi
start "$REPLICA"
wait_ready "$RPORT"
[ "$(psql_at "$RPORT" -d postgres -c 'SELECT pg_is_in_recovery()')" = t ] || die "$REPLICA is not in recovery (not a replica)"
# A test that died between pause and resume leaves replay paused: resume it.
psql_at "$RPORT" -d postgres -c 'SELECT pg_wal_replay_resume() WHERE pg_is_wal_replay_paused()' >/dev/null
# The replica streams from the primary.
for _ in $(seq 1 100); do
  [ "$(psql_at "$PPORT" -d postgres -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" -ge 1 ] && break
  sleep 0.1
done
[ "$(psql_at "$PPORT" -d postgres -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" -ge 1 ] \
  || die "the replica is not streaming from the primary"
# The database exists on the replica once replayed.
for _ in $(seq 1 100); do
  [ "$(psql_at "$RPORT" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" = 1 ] && break
  sleep 0.1
done

echo "export SCALEKIT_PG_PRIMARY_URL=postgres://postgres@127.0.0.1:$PPORT/$DB"
echo "export SCALEKIT_PG_REPLICA_URL=postgres://postgres@127.0.0.1:$RPORT/$DB"
