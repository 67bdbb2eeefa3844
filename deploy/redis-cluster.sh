#!/usr/bin/env bash
# A Redis Cluster on loopback for the kit's cluster tests and stages: three masters
# and three replicas of Debian's redis-server, ports 7000 to 7005
# (SCALEKIT_REDIS_CLUSTER_PORT moves the first), state under
# ${SCALEKIT_SERVICES_STATE:-/var/lib/scalekit}/redis-cluster/<port>.
#
#   redis-cluster.sh up      start the nodes that are down and create the cluster if
#                            its slots are not all served (idempotent); prints
#                            SCALEKIT_REDIS_CLUSTER_URLS=... on standard output
#   redis-cluster.sh status  each node's port, role, link and slots
#   redis-cluster.sh down    stop the nodes `up` started (their state stays, so the
#                            next `up` brings the same cluster back)
#
# A short node timeout (2 s) makes a replica take over from a killed master within a
# few seconds (measured here: promoted within 8 s of a kill -9; the killed node, started
# again by `up`, rejoins as a replica). Not yet started by services.sh or .ci/run: the
# crates' cluster support and tests (issue 19) come with that.
set -euo pipefail

BASE="${SCALEKIT_REDIS_CLUSTER_PORT:-7000}"
STATE_DIR="${SCALEKIT_SERVICES_STATE:-/var/lib/scalekit}/redis-cluster"
PORTS=()
for i in 0 1 2 3 4 5; do PORTS+=("$((BASE + i))"); done

log() { printf '%s\n' "$*" >&2; }
die() { printf 'redis-cluster: %s\n' "$*" >&2; exit 1; }
cli() { local port="$1"; shift; redis-cli -h 127.0.0.1 -p "$port" "$@"; }
node_up() { cli "$1" ping 2>/dev/null | grep -q PONG; }
info() { cli "$1" cluster info 2>/dev/null | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'; }

start_node() {
  local port="$1" dir="$STATE_DIR/$1"
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

# Every node sees all 16384 slots served and the cluster as ok.
whole() {
  local port
  for port in "${PORTS[@]}"; do
    [ "$(info "$port" cluster_state)" = ok ] || return 1
    [ "$(info "$port" cluster_slots_ok)" = 16384 ] || return 1
  done
}

create() {
  local port addrs=()
  # A node that half-joined an earlier, failed creation would refuse to join again.
  for port in "${PORTS[@]}"; do
    cli "$port" flushall >/dev/null 2>&1 || true
    cli "$port" cluster reset hard >/dev/null || die "cannot reset node $port"
    addrs+=("127.0.0.1:$port")
  done
  log "creating the cluster: ${addrs[*]}"
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >&2 \
    || die "redis-cli --cluster create failed"
}

up() {
  command -v redis-server >/dev/null || die "redis-server is missing (Debian: redis-server)"
  local port
  for port in "${PORTS[@]}"; do start_node "$port"; done
  if ! whole; then
    # Restarted nodes find each other from their nodes.conf; give them a moment
    # before creating the cluster afresh.
    for _ in $(seq 1 30); do whole && break; sleep 0.2; done
    whole || create
  fi
  for _ in $(seq 1 150); do whole && break; sleep 0.2; done
  whole || die "the cluster is not whole 30 s after creation"
  local urls=()
  for port in "${PORTS[@]}"; do urls+=("redis://127.0.0.1:$port"); done
  (IFS=,; printf 'SCALEKIT_REDIS_CLUSTER_URLS=%s\n' "${urls[*]}")
}

status() {
  local port any=""
  for port in "${PORTS[@]}"; do
    if node_up "$port"; then any=1; else printf 'redis-cluster node 127.0.0.1:%s: down\n' "$port"; fi
  done
  [ -n "$any" ] || return 0
  for port in "${PORTS[@]}"; do
    node_up "$port" || continue
    printf 'redis-cluster: state %s, %s of 16384 slots served (seen from %s)\n' \
      "$(info "$port" cluster_state)" "$(info "$port" cluster_slots_ok)" "$port"
    # id addr flags master ping pong epoch link slots...
    cli "$port" cluster nodes | tr -d '\r' | sort -k2 | awk '{
      role = ($3 ~ /master/) ? "master" : "replica"
      if ($3 ~ /fail/) role = role " (failing)"
      slots = ""
      for (i = 9; i <= NF; i++) slots = slots " " $i
      sub(/@.*/, "", $2)
      printf "  %s %s, link %s%s\n", $2, role, $8, (slots == "" ? "" : ", slots" slots)
    }'
    return 0
  done
}

down() {
  local port
  for port in "${PORTS[@]}"; do
    [ -e "$STATE_DIR/$port/started" ] || continue
    cli "$port" shutdown nosave >/dev/null 2>&1 || true
    rm -f "$STATE_DIR/$port/started"
  done
}

case "${1:-}" in
  up) up ;;
  status) status ;;
  down) down ;;
  *) die "usage: redis-cluster.sh up|status|down" ;;
esac
