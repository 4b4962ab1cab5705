#!/usr/bin/env bash
# Rough A/B of one full lifecycle (create, start, state, exec, kill, wait, delete): curl against a running runcd vs
# the runc CLI on a private root. Needs a runcd on $SOCK whose bundle roots contain $BUNDLE.
#   SOCK=/run/runcd/runcd.sock BUNDLE=/var/lib/runcd/bundles/demo bench/quick-lifecycle.sh [N]
set -euo pipefail
SOCK=${SOCK:-/run/runcd/runcd.sock}
BUNDLE=${BUNDLE:-/var/lib/runcd/bundles/demo}
N=${1:-20}
ROOT=$(mktemp -d /tmp/runcd-quick-root.XXXXXX)
trap 'for id in $(runc --root "$ROOT" list -q); do runc --root "$ROOT" delete -f "$id"; done; rm -rf "$ROOT"' EXIT
C="curl -sf -o /dev/null --unix-socket $SOCK"
J='content-type: application/json'
runcd_lifecycle() {
  $C -XPOST localhost/containers -H "$J" -d "{\"id\":\"$1\",\"bundle\":\"$BUNDLE\"}"
  $C -XPOST "localhost/containers/$1/start"
  $C "localhost/containers/$1"
  $C -XPOST "localhost/containers/$1/exec" -H "$J" -d '{"args":["true"]}'
  $C -XPOST "localhost/containers/$1/kill?signal=KILL"
  $C -XPOST "localhost/containers/$1/wait"
  $C -XDELETE "localhost/containers/$1"
}
runc_lifecycle() {
  local R="runc --root $ROOT"
  # runc create hands its stdio to the container: keep them off any pipe of ours.
  (cd "$BUNDLE" && $R create "$1" </dev/null >/dev/null 2>&1)
  $R start "$1"
  $R state "$1" >/dev/null
  $R exec "$1" true
  $R kill "$1" KILL
  until $R state "$1" | grep -q '"status": "stopped"'; do :; done
  $R delete "$1"
}
tag=$$
for i in 1 2 3; do runcd_lifecycle "warm-a-$tag-$i"; runc_lifecycle "warm-b-$tag-$i"; done
start=$(date +%s%N); for i in $(seq "$N"); do runcd_lifecycle "a-$tag-$i"; done; end=$(date +%s%N)
echo "runcd (curl): $(((end - start) / N / 1000000)) ms per lifecycle"
start=$(date +%s%N); for i in $(seq "$N"); do runc_lifecycle "b-$tag-$i"; done; end=$(date +%s%N)
echo "runc CLI:     $(((end - start) / N / 1000000)) ms per lifecycle"
