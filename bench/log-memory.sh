#!/usr/bin/env bash
# RSS and time of runcd serving a 200 MB container log (issue 13, item 2): `logs?tail=5` on the Docker socket,
# then a `docker attach` with logs=1 that never reads, then one without logs (only new output). Starts a runcd of
# its own from REPO (default: this checkout) on private dirs and removes everything at exit.
#   bench/log-memory.sh [REPO]
set -uo pipefail
REPO=$(cd "${1:-$(dirname "$0")/..}" && pwd)
W=$(mktemp -d /tmp/runcd-logmem.XXXXXX)
S=$W/r.sock D=$W/d.sock PID=
cleanup() {
  runc --root "$W/runc" delete --force big >/dev/null 2>&1
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/state" "$W/runc" "$W/bundles"
"$REPO/scripts/make-busybox-bundle.sh" "$W/bundles/big" sleep 999999 >/dev/null
node "$REPO/bin/runcd.js" --socket "$S" --docker-socket "$D" --state-dir "$W/state" --runtime-root "$W/runc" \
  --bundle-root "$W/bundles" --runtime "$(command -v runc)" --conmon "$(command -v conmon)" --log-level warn \
  >"$W/out" 2>&1 &
PID=$!
for _ in $(seq 150); do curl -sf --unix-socket "$S" http://x/healthz >/dev/null && break; sleep 0.2; done
curl -sf --unix-socket "$S" -H 'content-type: application/json' \
  -d "{\"id\":\"big\",\"bundle\":\"$W/bundles/big\",\"start\":true}" http://x/containers >/dev/null
# conmon's k8s-file format, written directly: far faster than a container printing 200 MB through conmon.
python3 - "$W/state/containers/big/ctr.log" <<'PY'
import sys
with open(sys.argv[1], 'a') as f:
    pad, i, n = 'p' * 60, 0, 0
    while n < 200 * 1024 * 1024:
        chunk = ''.join(f'2026-01-01T00:00:00.000000000Z stdout F line-{j} {pad}\n' for j in range(i, i + 10000))
        f.write(chunk); i += 10000; n += len(chunk)
PY
rss() { awk '/VmRSS/{print $2}' "/proc/$PID/status" 2>/dev/null || echo 0; }
# Peak RSS of runcd while process $1 runs (sampled every 50 ms).
peak() { local p=0 r; while kill -0 "$1" 2>/dev/null; do r=$(rss); [ "$r" -gt "$p" ] && p=$r; sleep 0.05; done; echo "$p"; }
never_read() { # $1: query; $2: seconds
  python3 - "$D" "$1" "$2" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.send(f'POST /v1.50/containers/big/attach?{sys.argv[2]} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n'.encode())
time.sleep(float(sys.argv[3])); s.close()
PY
  echo $!
}
echo "idle RSS: $(rss) KiB"
start=$(date +%s.%N)
curl -s --unix-socket "$D" "http://x/v1.50/containers/big/logs?stdout=1&stderr=1&tail=5" >/dev/null &
P=$!
echo "tail=5: peak RSS $(peak $P) KiB, $(echo "$(date +%s.%N) - $start" | bc) s"
echo "never-reading attach, logs=1, 8 s: peak RSS $(peak "$(never_read 'stream=1&stdout=1&stderr=1&logs=1' 8)") KiB"
echo "never-reading attach, no logs, 4 s: peak RSS $(peak "$(never_read 'stream=1&stdout=1&stderr=1' 4)") KiB"
sleep 0.5
if kill -0 "$PID" 2>/dev/null; then echo "runcd alive, RSS $(rss) KiB"; else echo "runcd died: $(tail -3 "$W/out")"; PID=; fi
