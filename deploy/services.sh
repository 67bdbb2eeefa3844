#!/usr/bin/env bash
# The services the storefront's stages 2 to 7 use, on loopback. `storefront services`
# runs this script (it is built into the binary); .ci/run runs it too.
#
#   services.sh up      create what is missing and start what is down (idempotent)
#   services.sh status  what runs where
#   services.sh down    stop what `up` started
#
#   PostgreSQL main      127.0.0.1:5432  the machine's own cluster (stages 2 to 4),
#                                        database `test`; started if down, never stopped
#   PostgreSQL primary   127.0.0.1:5434  cluster scalekit_primary (stage 5, the crates'
#                                        tests, stage files that keep one primary)
#   PostgreSQL replica   127.0.0.1:5433  cluster scalekit_replica: pg_basebackup of the
#                                        primary, hot standby, streaming
#   PostgreSQL fleet     127.0.0.1:5440  one cluster per database of stages 6 and 7 (a
#                        to 5453         "machine of its own"), each with a streaming
#                                        replica on the next port:
#       5440 scalekit_users      storefront_users      5441 scalekit_users_replica
#       5442 scalekit_catalog    storefront_catalog    5443 scalekit_catalog_replica
#       5444 scalekit_orders     storefront_orders     5445 scalekit_orders_replica
#       5446 scalekit_orders_0   storefront_orders_0   5447 scalekit_orders_0_replica
#       5448 scalekit_orders_1   storefront_orders_1   5449 scalekit_orders_1_replica
#       5450 scalekit_orders_2   storefront_orders_2   5451 scalekit_orders_2_replica
#       5452 scalekit_orders_3   storefront_orders_3   5453 scalekit_orders_3_replica
#                                        (stage 6: users, catalog, orders; stage 7: users,
#                                        catalog and the shards, 0 and 1 in use, 2 and 3
#                                        the resharding's targets). Made in parallel.
#   Redis                127.0.0.1:6379  stages 3 to 7
#   Redis Cluster        127.0.0.1:7000  three masters (7000-7002 at creation) and three
#                        to 7005         replicas, Debian's redis-server; state under
#                                        $STATE_DIR/redis-cluster/<port>; stages 3 to 7
#                                        when their stage file names it, the crates'
#                                        cluster tests (SCALEKIT_REDIS_CLUSTER_URLS)
#
#   services.sh redis-cluster up|status|down   the cluster alone (tests that kill a
#                                        node run `up` to bring it back)
#
# A short node timeout (2 s) makes a replica take over from a killed master within a
# few seconds; a killed node started again by `up` rejoins as a replica.
#
# Databases on the primary (they replicate): storefront (stage 5), storefront_users,
# storefront_catalog, storefront_orders, storefront_orders_0 to _3 (the crates' tests
# and stage files written for one primary), scalekit_replica (scalekit-replica's tests).
# Ports can be changed with SCALEKIT_PG_PRIMARY_PORT / SCALEKIT_PG_REPLICA_PORT, and
# the fleet's first port with SCALEKIT_PG_FLEET_PORT (the stage 6 and 7 files name
# 5440 to 5453).
set -euo pipefail

PRIMARY=scalekit_primary
REPLICA=scalekit_replica
PPORT="${SCALEKIT_PG_PRIMARY_PORT:-5434}"
RPORT="${SCALEKIT_PG_REPLICA_PORT:-5433}"
DATABASES=(scalekit_replica storefront storefront_users storefront_catalog storefront_orders
  storefront_orders_0 storefront_orders_1 storefront_orders_2 storefront_orders_3)
# The fleet: cluster scalekit_<part> on FBASE + 2i holds database storefront_<part>,
# its replica scalekit_<part>_replica is on the port after it.
FBASE="${SCALEKIT_PG_FLEET_PORT:-5440}"
FLEET=(users catalog orders orders_0 orders_1 orders_2 orders_3)
STATE_DIR="${SCALEKIT_SERVICES_STATE:-/var/lib/scalekit}"

log() { printf '%s\n' "$*" >&2; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }

pg_version() { ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1; }
as_pg() { runuser -u postgres -- "$@"; }
# postgresql-common's tools that read every cluster's settings (pg_lsclusters,
# pg_createcluster, pg_dropcluster) run one at a time, so that none meets a
# cluster a parallel job is half-way through creating (pg_ctlcluster reads its
# own cluster's only). -o: nothing the tool leaves running keeps the lock.
pgc() { mkdir -p "$STATE_DIR" && flock -o "$STATE_DIR/postgresql-common.lock" "$@"; }
# The clusters (version, name, port, status...): the list read once into LSC when
# it is set, else read now.
clusters() { if [ -n "${LSC:-}" ]; then printf '%s\n' "$LSC"; else pgc pg_lsclusters -h; fi; }
exists() { clusters | awk -v v="$VER" -v n="$1" '$1 == v && $2 == n { found = 1 } END { exit !found }'; }
online() { clusters | awk -v v="$VER" -v n="$1" '$1 == v && $2 == n && $4 ~ /online/ { found = 1 } END { exit !found }'; }
psql_at() { local port="$1"; shift; as_pg psql -X -q -At -h 127.0.0.1 -p "$port" -U postgres "$@"; }
wait_ready() {
  for _ in $(seq 1 100); do
    as_pg "$BIN/pg_isready" -q -h 127.0.0.1 -p "$1" && return 0
    sleep 0.1
  done
  die "nothing answers on 127.0.0.1:$1"
}
# Starts a cluster if it is down, and notes that `down` may stop it.
start_cluster() {
  online "$1" && return 0
  pg_ctlcluster "$VER" "$1" start >&2 || die "cannot start cluster $1"
  mkdir -p "$STATE_DIR" && touch "$STATE_DIR/started-$1"
}
# Writes a cluster's settings; a running cluster whose settings changed restarts.
write_conf() {
  local conf="/etc/postgresql/$VER/$1/conf.d/scalekit.conf"
  [ -f "$conf" ] && [ "$(cat "$conf")" = "$2" ] && return 0
  printf '%s\n' "$2" >"$conf"
  chown postgres:postgres "$conf"
  if online "$1"; then
    log "restarting $1 for its new settings"
    pg_ctlcluster "$VER" "$1" restart >&2 || die "cannot restart cluster $1"
  fi
}
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }

trust_loopback() {
  local hba="/etc/postgresql/$VER/$1/pg_hba.conf"
  cat >"$hba" <<HBA
# scalekit: trust on loopback only (see deploy/services.sh)
local   all          all                 trust
host    all          all   127.0.0.1/32  trust
local   replication  all                 trust
host    replication  all   127.0.0.1/32  trust
HBA
  chown postgres:postgres "$hba"
}

up_main() {
  local url="postgres://postgres@127.0.0.1:5432/postgres"
  main_ok() { psql -w "$url" -Atc 'select 1' >/dev/null 2>&1; }
  if ! main_ok; then
    [ -d "/etc/postgresql/$VER/main" ] || { log "no main cluster: stages 2 to 4 need one on 5432"; return 0; }
    pg_ctlcluster --skip-systemctl-redirect "$VER" main start >&2 2>/dev/null || true
    for _ in $(seq 1 50); do main_ok && break; sleep 0.2; done
  fi
  if ! main_ok; then
    # A fresh install asks for a password over TCP: trust postgres from loopback.
    local hba="/etc/postgresql/$VER/main/pg_hba.conf"
    sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba" || die "cannot edit $hba"
    pg_ctlcluster --skip-systemctl-redirect "$VER" main reload >&2 || die "cannot reload the main cluster"
    for _ in $(seq 1 50); do main_ok && break; sleep 0.2; done
  fi
  main_ok || die "PostgreSQL is not answering on 127.0.0.1:5432"
  if [ "$(psql -w "$url" -Atc "select 1 from pg_database where datname = 'test'")" != 1 ]; then
    psql -w "$url" -qc 'CREATE DATABASE test' >&2
  fi
}

# A primary's settings: max_connections, shared_buffers, wal_keep_size.
primary_conf() {
  printf '%s\n' "listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
wal_keep_size = '$3'
max_connections = $1
fsync = off
synchronous_commit = on
shared_buffers = '$2'"
}
# A hot standby's: max_connections (at least the primary's), shared_buffers.
replica_conf() {
  printf '%s\n' "listen_addresses = '127.0.0.1'
hot_standby = on
max_connections = $1
fsync = off
shared_buffers = '$2'"
}

# Creates cluster NAME on PORT if missing, writes its settings CONF, starts it and
# creates the databases DB... that it lacks.
make_primary() {
  local name="$1" port="$2" conf="$3"
  shift 3
  if ! exists "$name"; then
    log "creating cluster $VER/$name on port $port"
    if ! pgc pg_createcluster "$VER" "$name" -p "$port" >&2 -- --auth=trust --no-sync; then
      forget_cluster "$name"
      die "cannot create cluster $name"
    fi
    trust_loopback "$name"
  fi
  write_conf "$name" "$conf"
  start_cluster "$name"
  wait_ready "$port"
  local have db
  have="$(psql_at "$port" -d postgres -c 'SELECT datname FROM pg_database')"
  for db in "$@"; do
    grep -qxF "$db" <<<"$have" || psql_at "$port" -d postgres -c "CREATE DATABASE $db" >&2
  done
}

# Drops cluster NAME whose creation failed half-way, so that the next `up` makes
# it afresh (it holds nothing yet).
forget_cluster() {
  log "dropping the half-made cluster $1"
  pgc pg_dropcluster --stop "$VER" "$1" >&2 || true
}

# Makes cluster NAME on PORT a hot standby of the primary on PPORT: a cluster
# whose data directory is replaced by a pg_basebackup of the primary (-R: it
# streams from it), trusting loopback. Fails at the first step that fails.
create_replica() {
  local name="$1" port="$2" pport="$3" data
  pgc pg_createcluster "$VER" "$name" -p "$port" >&2 -- --no-sync || return 1
  data="$(sed -n "s/^data_directory = '\(.*\)'.*/\1/p" "/etc/postgresql/$VER/$name/postgresql.conf")"
  [ -n "$data" ] && [ -d "$data" ] || { log "no data directory for $name"; return 1; }
  rm -rf "${data:?}"/* || return 1
  as_pg pg_basebackup -h 127.0.0.1 -p "$pport" -U postgres -D "$data" -X stream -R -c fast >&2 \
    || { log "pg_basebackup of 127.0.0.1:$pport for $name failed"; return 1; }
  trust_loopback "$name"
}

# Creates cluster NAME on PORT if missing as a pg_basebackup of the primary on
# PPORT (streaming, hot standby), writes its settings CONF, starts it, and waits
# until it streams and has replayed the creation of database LAST.
make_replica() {
  local name="$1" port="$2" pport="$3" conf="$4" last="$5"
  if ! exists "$name"; then
    log "creating replica $VER/$name on port $port from 127.0.0.1:$pport"
    if ! create_replica "$name" "$port" "$pport"; then
      forget_cluster "$name"
      die "cannot create replica $name of 127.0.0.1:$pport"
    fi
  fi
  write_conf "$name" "$conf"
  start_cluster "$name"
  wait_ready "$port"
  # Its role, whether replay is paused, and whether it has database LAST yet.
  local state
  state="$(psql_at "$port" -d postgres -c "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 'primary'
    WHEN pg_is_wal_replay_paused() THEN 'paused' ELSE 'replaying' END
    || ' ' || (SELECT count(*) FROM pg_database WHERE datname = '$last')")"
  case "$state" in
    primary*) die "$name is not in recovery (not a replica)" ;;
    # A test that died between pause and resume leaves replay paused: resume it.
    paused*) psql_at "$port" -d postgres -c 'SELECT pg_wal_replay_resume()' >/dev/null ;;
  esac
  local streaming=0
  for _ in $(seq 1 100); do
    streaming="$(psql_at "$pport" -d postgres -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")"
    [ "$streaming" -ge 1 ] && break
    sleep 0.1
  done
  [ "$streaming" -ge 1 ] || die "$name is not streaming from 127.0.0.1:$pport"
  # Every database exists on the replica once replayed.
  [ "$state" = "replaying 1" ] && return 0
  for _ in $(seq 1 100); do
    [ "$(psql_at "$port" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$last'")" = 1 ] && return 0
    sleep 0.1
  done
  die "$name has not replayed the databases' creation"
}

up_primary() {
  make_primary "$PRIMARY" "$PPORT" "$(primary_conf 300 64MB 256MB)" "${DATABASES[@]}"
}

up_replica() {
  make_replica "$REPLICA" "$RPORT" "$PPORT" "$(replica_conf 300 64MB)" "${DATABASES[-1]}"
}

# Part I of the fleet (users, catalog, orders, orders_N): its name, ports, database.
fleet_part() {
  local i
  for i in "${!FLEET[@]}"; do
    if [ "${FLEET[$i]}" = "$1" ]; then
      FNAME="scalekit_$1"
      FPORT=$((FBASE + 2 * i))
      FRPORT=$((FPORT + 1))
      FDB="storefront_$1"
      return 0
    fi
  done
  die "no fleet cluster $1"
}

# One database's machine: its primary (small: it holds one database) and replica.
up_fleet_pair() {
  fleet_part "$1"
  make_primary "$FNAME" "$FPORT" "$(primary_conf 100 16MB 64MB)" "$FDB"
  make_replica "${FNAME}_replica" "$FRPORT" "$FPORT" "$(replica_conf 100 16MB)" "$FDB"
}

# Runs each job (a command line) in the background, then waits for all of them
# (clusters are made, started and stopped side by side: each mostly waits); WHAT
# names them if one fails.
in_parallel() {
  local what="$1" pids=() job pid failed=0
  shift
  for job in "$@"; do
    # shellcheck disable=SC2086
    ( $job ) &
    pids+=("$!")
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
  done
  [ "$failed" = 0 ] || die "$what failed (see above)"
}

up_postgres() {
  local jobs=("up_primary_and_replica") part
  # Each job makes and starts clusters of its own only: the list as it was at the
  # start answers which exist and which run.
  LSC="$(pgc pg_lsclusters -h)"
  for part in "${FLEET[@]}"; do jobs+=("up_fleet_pair $part"); done
  in_parallel "setting up the PostgreSQL clusters" "${jobs[@]}"
  LSC=
}
up_primary_and_replica() {
  up_primary
  up_replica
}

# Stage 8's parts, from Debian: nftables (the kernel datapath), keepalived (the
# virtual IP), HAProxy and nginx's stream module (the layer-4 proxies it is
# measured against), conntrack (to look at flows). Installed when missing.
up_l4_packages() {
  local missing=()
  command -v nft >/dev/null || missing+=(nftables)
  command -v keepalived >/dev/null || missing+=(keepalived)
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v conntrack >/dev/null || missing+=(conntrack)
  [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing ${missing[*]}"
  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}") >&2 \
    || die "cannot install ${missing[*]}"
}

up_redis() {
  redis_up && return 0
  if ! command -v redis-server >/dev/null; then
    (apt-get update && apt-get install -y redis-server redis-tools) >&2 || die "cannot install redis-server"
  fi
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2 || die "cannot start redis-server"
  mkdir -p "$STATE_DIR" && touch "$STATE_DIR/started-redis"
  for _ in $(seq 1 50); do redis_up && return 0; sleep 0.1; done
  die "Redis is not answering on 127.0.0.1:6379"
}

# --- Redis Cluster -------------------------------------------------------------------
CBASE="${SCALEKIT_REDIS_CLUSTER_PORT:-7000}"
CPORTS=()
for i in 0 1 2 3 4 5; do CPORTS+=("$((CBASE + i))"); done
cli() { local port="$1"; shift; redis-cli -h 127.0.0.1 -p "$port" "$@"; }
node_up() { cli "$1" ping 2>/dev/null | grep -q PONG; }
cinfo() { cli "$1" cluster info 2>/dev/null | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'; }

start_node() {
  local port="$1" dir="$STATE_DIR/redis-cluster/$1"
  node_up "$port" && return 0
  mkdir -p "$dir"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" \
    --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 2000 \
    --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" >&2 \
    || die "cannot start redis-server on port $port"
  touch "$dir/started"
  for _ in $(seq 1 50); do node_up "$port" && return 0; sleep 0.1; done
  die "redis-server on port $port does not answer"
}

# Every node sees all 16384 slots served, the cluster ok, and every master a replica.
cluster_whole() {
  local port
  for port in "${CPORTS[@]}"; do
    [ "$(cinfo "$port" cluster_state)" = ok ] || return 1
    [ "$(cinfo "$port" cluster_slots_ok)" = 16384 ] || return 1
    [ "$(cinfo "$port" cluster_known_nodes)" = 6 ] || return 1
  done
  [ "$(cli "${CPORTS[0]}" cluster nodes | grep -c 'slave' || true)" = 3 ] || return 1
  [ "$(cli "${CPORTS[0]}" cluster nodes | grep -c 'fail' || true)" = 0 ] || return 1
  # No slot half-migrated and every node's view the same (redis-cli's check: a
  # reshard cut short leaves slots open, and a failover right after one can
  # leave the nodes disagreeing).
  redis-cli --cluster check "127.0.0.1:${CPORTS[0]}" 2>/dev/null | grep -qE '\[(ERR|WARNING)\]' && return 1
  # Each replica is in sync (a node that just rejoined may still be loading its
  # master's data: a failover then would wait for it).
  local repl
  for port in "${CPORTS[@]}"; do
    repl="$(cli "$port" info replication 2>/dev/null | tr -d '\r')"
    grep -q '^role:slave' <<<"$repl" || continue
    grep -q '^master_link_status:up' <<<"$repl" || return 1
    grep -q '^master_sync_in_progress:0' <<<"$repl" || return 1
  done
}

cluster_create() {
  local port addrs=()
  # A node that half-joined an earlier, failed creation would refuse to join again.
  for port in "${CPORTS[@]}"; do
    cli "$port" flushall >/dev/null 2>&1 || true
    cli "$port" cluster reset hard >/dev/null || die "cannot reset node $port"
    addrs+=("127.0.0.1:$port")
  done
  log "creating the Redis Cluster: ${addrs[*]}"
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >&2 \
    || die "redis-cli --cluster create failed"
}

up_redis_cluster() {
  command -v redis-server >/dev/null || up_redis
  local port
  for port in "${CPORTS[@]}"; do start_node "$port"; done
  cluster_whole && return 0
  if [ "$(cinfo "${CPORTS[0]}" cluster_known_nodes)" = 1 ]; then
    cluster_create
  else
    # Restarted nodes find each other from their nodes.conf, and a node that was
    # killed rejoins as a replica: give them time.
    for _ in $(seq 1 75); do cluster_whole && break; sleep 0.2; done
    if ! cluster_whole; then
      # A failover right after a slot migration can leave a node that does not
      # know it owns a slot, a migration cut short leaves slots open: redis-cli
      # repairs both (answering its questions yes); twice, as one fix can
      # uncover the next.
      local attempt
      for attempt in 1 2; do
        cluster_whole && break
        log "repairing the Redis Cluster (redis-cli --cluster fix, attempt $attempt)"
        yes yes 2>/dev/null | head -n 200 | redis-cli --cluster fix "127.0.0.1:${CPORTS[0]}" >&2 || true
        for _ in $(seq 1 25); do cluster_whole && break; sleep 0.2; done
      done
      if ! cluster_whole; then
        # Beyond repair (a migration cut short by a failover can leave a slot
        # redis-cli cannot move): the cluster holds caches and test data
        # only, so it is made afresh.
        log "the Redis Cluster could not be repaired: creating it afresh (its data is lost)"
        cluster_create
      fi
    fi
  fi
  for _ in $(seq 1 150); do cluster_whole && break; sleep 0.2; done
  cluster_whole || die "the Redis Cluster is not whole 30 s after start"
}

cluster_urls() {
  local urls=() port
  for port in "${CPORTS[@]}"; do urls+=("redis://127.0.0.1:$port"); done
  (IFS=,; printf '%s\n' "${urls[*]}")
}

status_redis_cluster() {
  local port
  for port in "${CPORTS[@]}"; do
    node_up "$port" || continue
    printf '%-20s %-16s state %s, %s of 16384 slots served, seeds %s\n' "Redis Cluster" \
      "127.0.0.1:$port" "$(cinfo "$port" cluster_state)" "$(cinfo "$port" cluster_slots_ok)" "$(cluster_urls)"
    # id addr flags master ping pong epoch link slots...
    cli "$port" cluster nodes | tr -d '\r' | sort -k2 | awk '{
      role = ($3 ~ /master/) ? "master" : "replica"
      if ($3 ~ /fail/) role = role " (failing)"
      slots = ""
      for (i = 9; i <= NF; i++) slots = slots " " $i
      sub(/@.*/, "", $2)
      printf "  %-18s %-16s %s, link %s%s\n", "", $2, role, $8, (slots == "" ? "" : ", slots" slots)
    }'
    for port in "${CPORTS[@]}"; do
      node_up "$port" || printf '  %-18s 127.0.0.1:%-6s down\n' "" "$port"
    done
    return 0
  done
  printf '%-20s %-16s %s\n' "Redis Cluster" "127.0.0.1:$CBASE" "down (services up)"
}

down_redis_cluster() {
  local port
  for port in "${CPORTS[@]}"; do
    [ -e "$STATE_DIR/redis-cluster/$port/started" ] || continue
    cli "$port" shutdown nosave >/dev/null 2>&1 || true
    rm -f "$STATE_DIR/redis-cluster/$port/started"
  done
  log "stopped the Redis Cluster"
}

# The replica's line: up and streaming (lag as the primary on PPORT sees it),
# paused, down or not created.
replica_state() {
  local name="$1" port="$2" pport="$3" state lag
  if exists "$name" && online "$name"; then
    lag="$(psql_at "$pport" -d postgres -c "SELECT state || ', replay lag ' || pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)) FROM pg_stat_replication LIMIT 1" 2>/dev/null || true)"
    state="up, ${lag:-not streaming}"
    [ "$(psql_at "$port" -d postgres -c 'SELECT pg_is_wal_replay_paused()' 2>/dev/null)" = t ] && state="$state, replay PAUSED"
  elif exists "$name"; then state=down; else state="not created (services up)"; fi
  printf '%s\n' "$state"
}

# The two lines of fleet part PART: the primary and its replica.
status_pair() {
  local state
  fleet_part "$1"
  if exists "$FNAME" && online "$FNAME"; then
    state="$(psql_at "$FPORT" -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$FDB'" 2>/dev/null || true)"
    case "$state" in
      1) state="up, database $FDB" ;;
      0) state="up, no database $FDB (services up)" ;;
      *) state="up, not answering" ;;
    esac
  elif exists "$FNAME"; then state=down; else state="not created (services up)"; fi
  printf '%-20s %-16s %s\n' "PostgreSQL $1" "127.0.0.1:$FPORT" "$state"
  printf '  %-18s %-16s %s\n' replica "127.0.0.1:$FRPORT" "$(replica_state "${FNAME}_replica" "$FRPORT" "$FPORT")"
}

# Every pair's lines, asked side by side and printed in order.
status_fleet() {
  local dir part pids=()
  dir="$(mktemp -d)"
  for part in "${FLEET[@]}"; do
    status_pair "$part" >"$dir/$part" 2>/dev/null &
    pids+=("$!")
  done
  wait "${pids[@]}" || true
  for part in "${FLEET[@]}"; do cat "$dir/$part"; done
  rm -rf "$dir"
}

status() {
  local state
  LSC="$(pgc pg_lsclusters -h)"
  printf '%-20s %-16s %s\n' service address state
  if psql -w "postgres://postgres@127.0.0.1:5432/postgres" -Atc 'select 1' >/dev/null 2>&1; then
    state=up; else state=down; fi
  printf '%-20s %-16s %s\n' "PostgreSQL main" 127.0.0.1:5432 "$state"
  if exists "$PRIMARY" && online "$PRIMARY"; then
    state="up, databases: $(psql_at "$PPORT" -d postgres -c "SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database WHERE datname LIKE 'storefront%'")"
  elif exists "$PRIMARY"; then state=down; else state="not created (services up)"; fi
  printf '%-20s %-16s %s\n' "PostgreSQL primary" "127.0.0.1:$PPORT" "$state"
  printf '%-20s %-16s %s\n' "PostgreSQL replica" "127.0.0.1:$RPORT" "$(replica_state "$REPLICA" "$RPORT" "$PPORT")"
  status_fleet
  if redis_up; then state=up; else state=down; fi
  printf '%-20s %-16s %s\n' Redis 127.0.0.1:6379 "$state"
  status_redis_cluster
}

# Stops cluster NAME if `up` started it.
stop_cluster() {
  local name="$1"
  [ -e "$STATE_DIR/started-$name" ] || return 0
  online "$name" && pg_ctlcluster "$VER" "$name" stop >&2
  rm -f "$STATE_DIR/started-$name"
  log "stopped $name"
}

down() {
  local part replicas=() primaries=()
  for part in "${FLEET[@]}"; do
    replicas+=("stop_cluster scalekit_${part}_replica")
    primaries+=("stop_cluster scalekit_$part")
  done
  # Replicas before their primaries.
  in_parallel "stopping the replicas" "stop_cluster $REPLICA" "${replicas[@]}"
  in_parallel "stopping the primaries" "stop_cluster $PRIMARY" "${primaries[@]}"
  if [ -e "$STATE_DIR/started-redis" ]; then
    redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true
    rm -f "$STATE_DIR/started-redis"
    log "stopped Redis"
  fi
  down_redis_cluster
  log "services down: what \`up\` started is stopped (the main cluster is left alone)"
}

cmd="${1:-status}"
if [ "$cmd" = redis-cluster ]; then
  case "${2:-status}" in
    up) up_redis_cluster; status_redis_cluster ;;
    status) status_redis_cluster ;;
    down) down_redis_cluster ;;
    *) die "unknown command \"redis-cluster ${2:-}\": up, status or down" ;;
  esac
  exit 0
fi
if ! command -v pg_createcluster >/dev/null || ! command -v pg_basebackup >/dev/null; then
  [ "$cmd" = up ] || die "PostgreSQL is not installed (services up installs it)"
  log "installing PostgreSQL"
  (apt-get update && apt-get install -y postgresql postgresql-contrib) >&2 || die "cannot install postgresql"
fi
VER="$(pg_version)"
[ -n "$VER" ] || die "no PostgreSQL server version under /usr/lib/postgresql"
BIN="/usr/lib/postgresql/$VER/bin"

case "$cmd" in
  up)
    up_main
    up_postgres
    up_redis
    up_redis_cluster
    up_l4_packages
    status
    ;;
  status) status ;;
  down) down ;;
  *) die "unknown command \"$cmd\": up, status or down" ;;
esac
