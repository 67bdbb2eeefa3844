#!/usr/bin/env bash
# A PostgreSQL primary and a streaming replica of it, on loopback, for the
# scalekit-replica tests and the storefront's stage 5 (stages 6 and 7 have a
# cluster per database, 127.0.0.1:5440-5453, made by the same script): deploy/services.sh
# creates what is missing and starts what is down (idempotently); this prints the
# two URLs as `export` lines (eval them, as .ci/run does).
#
#   primary: cluster scalekit_primary on 127.0.0.1:5434 (trust on loopback)
#   replica: cluster scalekit_replica on 127.0.0.1:5433, streaming from it
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
bash "$ROOT/deploy/services.sh" up >&2
echo "export SCALEKIT_PG_PRIMARY_URL=postgres://postgres@127.0.0.1:${SCALEKIT_PG_PRIMARY_PORT:-5434}/scalekit_replica"
echo "export SCALEKIT_PG_REPLICA_URL=postgres://postgres@127.0.0.1:${SCALEKIT_PG_REPLICA_PORT:-5433}/scalekit_replica"
