#!/usr/bin/env bash
# Unleash's own server (the npm package `unleash-server`), on loopback, for
# scalekit-flags' test against a real server (crates/scalekit-flags/tests/unleash_server.rs).
#
#   unleash.sh install  npm-installs unleash-server into $SCALEKIT_UNLEASH_HOME when missing
#   unleash.sh start    install, create its database, start it (idempotent), then print the
#                       variables the test reads as `export` lines: eval them
#   unleash.sh env      print those `export` lines only
#   unleash.sh status   whether it runs, where, with which pid
#   unleash.sh stop     stop the server `start` started (by the pid it recorded)
#
#   server    http://127.0.0.1:$SCALEKIT_UNLEASH_PORT (default 4242), loopback only
#   version   $SCALEKIT_UNLEASH_VERSION (default 7.5.1: 7.x runs on Node 20, 8.x wants 22)
#   folder    $SCALEKIT_UNLEASH_HOME (default $HOME/.cache/scalekit/unleash): the npm
#             install, the pid file and the log (unleash.log)
#   database  unleash_test on the machine's PostgreSQL at 127.0.0.1:5432 (trust), created
#             when missing; $SCALEKIT_UNLEASH_DB overrides the name
#   tokens    an admin token and a client token made at start-up (INIT_ADMIN_API_TOKENS,
#             INIT_CLIENT_API_TOKENS); they are test secrets, valid on loopback only
#
# In CI: eval "$(bash deploy/unleash.sh start)" exports SCALEKIT_UNLEASH_URL,
# SCALEKIT_UNLEASH_ADMIN_TOKEN and SCALEKIT_UNLEASH_CLIENT_TOKEN.
set -euo pipefail

HOME_DIR="${SCALEKIT_UNLEASH_HOME:-$HOME/.cache/scalekit/unleash}"
VERSION="${SCALEKIT_UNLEASH_VERSION:-7.5.1}"
PORT="${SCALEKIT_UNLEASH_PORT:-4242}"
DB="${SCALEKIT_UNLEASH_DB:-unleash_test}"
PG_HOST="${SCALEKIT_UNLEASH_PG_HOST:-127.0.0.1}"
PG_PORT="${SCALEKIT_UNLEASH_PG_PORT:-5432}"
ADMIN_TOKEN="*:*.scalekit-unleash-admin-test-token"
CLIENT_TOKEN="default:development.scalekit-unleash-client-test-token"
URL="http://127.0.0.1:$PORT"
PID_FILE="$HOME_DIR/unleash.pid"
LOG="$HOME_DIR/unleash.log"
PKG="$HOME_DIR/node_modules/unleash-server/package.json"

log() { printf 'unleash: %s\n' "$*" >&2; }
die() { printf 'unleash: %s\n' "$*" >&2; exit 1; }

installed_version() {
  [ -f "$PKG" ] && node -e 'process.stdout.write(require(process.argv[1]).version)' "$PKG" 2>/dev/null
}

install() {
  command -v node >/dev/null || die "node is not on PATH (unleash-server $VERSION needs Node 20 or newer)"
  command -v npm >/dev/null || die "npm is not on PATH"
  if [ "$(installed_version || true)" = "$VERSION" ]; then
    return 0
  fi
  mkdir -p "$HOME_DIR"
  [ -f "$HOME_DIR/package.json" ] || printf '{"name":"scalekit-unleash","private":true}\n' >"$HOME_DIR/package.json"
  log "installing unleash-server@$VERSION into $HOME_DIR (npm)"
  (cd "$HOME_DIR" && npm install --no-audit --no-fund --loglevel=error "unleash-server@$VERSION" >&2) \
    || die "npm install unleash-server@$VERSION failed in $HOME_DIR"
  [ "$(installed_version || true)" = "$VERSION" ] || die "unleash-server@$VERSION is not in $HOME_DIR after npm install"
}

psql_pg() { psql -X -q -At -w "postgres://postgres@$PG_HOST:$PG_PORT/postgres" "$@"; }

create_db() {
  psql_pg -c 'select 1' >/dev/null 2>&1 \
    || die "PostgreSQL does not answer at $PG_HOST:$PG_PORT (deploy/services.sh up starts it)"
  if [ "$(psql_pg -c "select 1 from pg_database where datname = '$DB'")" != 1 ]; then
    log "creating database $DB"
    psql_pg -c "create database \"$DB\"" || die "cannot create database $DB"
  fi
}

# The pid in the pid file, when that process is alive and is our node server.
running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid
  pid=$(cat "$PID_FILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  grep -q "unleash-server" "/proc/$pid/cmdline" 2>/dev/null || return 1
  printf '%s' "$pid"
}

healthy() { curl -fsS -o /dev/null --max-time 2 "$URL/health" 2>/dev/null; }

print_env() {
  printf 'export SCALEKIT_UNLEASH_URL=%q\n' "$URL"
  printf 'export SCALEKIT_UNLEASH_ADMIN_TOKEN=%q\n' "$ADMIN_TOKEN"
  printf 'export SCALEKIT_UNLEASH_CLIENT_TOKEN=%q\n' "$CLIENT_TOKEN"
}

start() {
  install
  create_db
  if pid=$(running_pid); then
    healthy || die "unleash (pid $pid) runs but $URL/health does not answer; see $LOG"
    log "already running at $URL (pid $pid)"
    print_env
    return 0
  fi
  if healthy; then
    die "something not started by this script already answers at $URL (set SCALEKIT_UNLEASH_PORT)"
  fi
  log "starting unleash-server $VERSION at $URL (log: $LOG)"
  (
    cd "$HOME_DIR"
    export TZ=UTC NODE_ENV=production
    export DATABASE_URL="postgres://postgres@$PG_HOST:$PG_PORT/$DB" DATABASE_SSL=false
    export HTTP_HOST=127.0.0.1 HTTP_PORT="$PORT"
    export INIT_ADMIN_API_TOKENS="$ADMIN_TOKEN" INIT_CLIENT_API_TOKENS="$CLIENT_TOKEN"
    export CHECK_VERSION=false SEND_TELEMETRY=false LOG_LEVEL=warn
    # Feature-level ("environment") variants with overrides are deprecated in 7.x in
    # favour of strategy variants; the test covers both, so keep them available.
    export UNLEASH_EXPERIMENTAL_ENABLE_LEGACY_VARIANTS=true
    setsid node "$HOME_DIR/node_modules/unleash-server/dist/server.js" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
  )
  for _ in $(seq 1 600); do
    healthy && break
    pid=$(cat "$PID_FILE")
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$LOG" >&2; die "unleash-server exited during start-up"; }
    sleep 0.2
  done
  healthy || { tail -n 30 "$LOG" >&2; die "unleash-server did not answer at $URL/health within 120 s"; }
  log "running at $URL (pid $(cat "$PID_FILE"))"
  print_env
}

stop() {
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    log "not running (no live pid in $PID_FILE)"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid did not stop within 10 s of SIGTERM; sending SIGKILL"
    kill -KILL "$pid"
  fi
  rm -f "$PID_FILE"
  log "stopped (pid $pid)"
}

status() {
  if pid=$(running_pid); then
    if healthy; then
      echo "unleash-server $(installed_version) at $URL, pid $pid, database $DB"
    else
      echo "unleash-server pid $pid runs but $URL/health does not answer (log: $LOG)"
      return 1
    fi
  else
    echo "unleash-server is not running (installed: $(installed_version || echo none))"
    return 1
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  env) print_env ;;
  status) status ;;
  stop) stop ;;
  *) die "usage: $0 install|start|env|status|stop" ;;
esac
