#!/usr/bin/env bash
# Proves the Dockerfile builds and runs on a machine that reaches no container registry (only Debian's mirror and
# the npm registry), with Podman, as root:
#   1. debootstraps a minimal bookworm and imports it as docker.io/library/debian:bookworm-slim;
#   2. adds this host's Node 20 (binary, npm, headers) in the official image's layout (/usr/local, user `node`)
#      and imports that as docker.io/library/node:20-bookworm-slim;
#   3. builds the Dockerfile unchanged on top of them;
#   4. runs the image privileged as documented, waits until its HEALTHCHECK passes, and drives one container
#      lifecycle through it with the host's runcctl (create, list, start, exec, kill, state, delete), then stops it
#      with SIGTERM and checks it shut down cleanly;
#   5. (SYSTEMD_PROOF=0 skips it) adds Debian's systemd and systemd/runcd.service to the image, runs it with systemd
#      as PID 1, and upgrades runcd under a running container with `systemctl restart` (KillMode=process).
# Everything lives under $WORK (default /var/tmp/runcd-image-proof) with Podman storage of its own; the base images
# are kept for the next run (KEEP_IMAGES=0 removes them). Takes minutes: not part of every CI run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=${WORK:-/var/tmp/runcd-image-proof}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
image=localhost/runcd:proof
name=runcd-proof-$$
started=$(date +%s)
phase_started=$started
phase() {
  local now
  now=$(date +%s)
  echo "== [$((now - started))s total, previous step $((now - phase_started))s] $*"
  phase_started=$now
}
fail() {
  echo "prove-image: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root"
missing=()
for pkg in podman debootstrap; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" = 20 ] || fail "the host's Node is $(node --version); the node:20 stand-in needs Node 20"
[ -x bin/runcctl.js ] && [ -f dist/src/cli/runcctl/cli.js ] || fail "build first: npm ci && npm run build"

mkdir -p "$work"
# Podman gives containers 1048576 open files and processes unless told otherwise, and runc fails setting a limit
# above the one it runs with where root may not raise limits (no CAP_SYS_RESOURCE, as on this VM: open files 20000).
# Podman 4.3 also runs itself, and so conmon and runc, with at most 32768 processes.
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF=$work/containers.conf
pm() { podman --root "$work/storage" --runroot "$work/runroot" "$@"; }

id=proof-demo
run_dir=$work/run-runcd
state_dir=$work/var-lib-runcd
# Everything in $work/storage is this script's: an earlier run that was killed (SIGKILL leaves no trap to run) may
# have left its runcd container or buildah's working containers there, so cleanup runs first as well as last.
# (Images stay: the untagged ones are podman build's layer cache.)
remove_leftovers() {
  # Removing a container kills everything in its pid namespace, the containers runcd made included. (runc on
  # the host must not be pointed at their state: the pids in it are the container namespace's.)
  pm ps -a --external --format '{{.ID}}' 2>/dev/null | xargs -r podman --root "$work/storage" --runroot "$work/runroot" rm -f -t 0 >/dev/null 2>&1
  rmdir /sys/fs/cgroup/*/"$id" /sys/fs/cgroup/unified/"$id" 2>/dev/null
  # Podman's parent cgroup (cgroupfs manager) and the one it keeps its conmons in, once no podman container
  # anywhere is left in them (rmdir removes only empty cgroups).
  rmdir /sys/fs/cgroup/*/libpod_parent/conmon /sys/fs/cgroup/*/libpod_parent 2>/dev/null
  rm -rf "$run_dir" "$state_dir"
}
cleanup() {
  set +e
  remove_leftovers
  # containers/storage keeps its overlay directory mounted after podman exits.
  umount "$work/storage/overlay" 2>/dev/null
  if [ "${KEEP_IMAGES:-1}" = 0 ]; then
    pm rmi -a -f >/dev/null 2>&1
    rm -rf "$work"
  fi
}
trap cleanup EXIT
# Bash runs the EXIT trap when it exits on a signal only if the signal is trapped.
trap 'exit 130' INT
trap 'exit 143' TERM HUP
remove_leftovers || true

phase "base images"
if ! pm image exists docker.io/library/debian:bookworm-slim; then
  rootfs=$work/rootfs
  rm -rf "$rootfs"
  phase "debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase --include=passwd bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    fail "debootstrap failed; see $work/debootstrap.log"
  # The official image's sources: the release, its updates and the security archive.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  tar -C "$rootfs" -cf "$work/debian-bookworm.tar" .
  pm import -q --change 'CMD ["bash"]' "$work/debian-bookworm.tar" docker.io/library/debian:bookworm-slim >/dev/null
  phase "imported docker.io/library/debian:bookworm-slim"

  # node:20-bookworm-slim's layout: node, npm and the headers under /usr/local, a user `node` with uid 1000.
  node_bin=$(readlink -f "$(command -v node)")
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  headers=$(dirname "$node_bin")/../include/node
  [ -f "$headers/node_version.h" ] || fail "Node's headers are not at $headers"
  install -D -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
  mkdir -p "$rootfs/usr/local/lib/node_modules" "$rootfs/usr/local/include"
  cp -a "$npm_dir" "$rootfs/usr/local/lib/node_modules/npm"
  cp -a "$headers" "$rootfs/usr/local/include/node"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  chroot "$rootfs" groupadd --gid 1000 node
  chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  chroot "$rootfs" /usr/local/bin/node --version >/dev/null || fail "the host's node does not run in bookworm"
  # Where this host reaches the npm registry through a TLS-inspecting proxy, its Node trusts the proxy's CA through
  # NODE_EXTRA_CA_CERTS (or npm's cafile); the stand-in trusts what the host's Node trusts, so the Dockerfile's
  # `npm ci` works here unchanged. (On an open network there is nothing to add.)
  node_env=()
  extra_ca=${NODE_EXTRA_CA_CERTS:-$(npm config get cafile 2>/dev/null || true)}
  if [ -n "$extra_ca" ] && [ -f "$extra_ca" ]; then
    install -D -m 0644 "$extra_ca" "$rootfs/usr/local/share/host-ca/ca-bundle.pem"
    node_env=(--change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/host-ca/ca-bundle.pem')
  fi
  tar -C "$rootfs" -cf "$work/node-20-bookworm.tar" .
  pm import -q --change 'CMD ["node"]' "${node_env[@]}" "$work/node-20-bookworm.tar" \
    docker.io/library/node:20-bookworm-slim >/dev/null
  rm -rf "$rootfs" "$work"/*.tar
  phase "imported docker.io/library/node:20-bookworm-slim (Node $(node --version))"
else
  echo "(reusing the base images in $work/storage)"
fi

phase "podman build"
pm build --format docker --network host --pull=never -t "$image" -f Dockerfile . >"$work/build.log" 2>&1 ||
  { tail -40 "$work/build.log" >&2; fail "podman build failed; see $work/build.log"; }
pm image inspect "$image" --format 'image {{.Id}}: {{.Size}} bytes'
phase "built $image"

mkdir -p "$run_dir" "$state_dir/bundles"
chmod 0750 "$run_dir"
scripts/make-busybox-bundle.sh "$state_dir/bundles/demo" >/dev/null
# (Podman schedules HEALTHCHECKs with systemd timers and complains where the host's PID 1 is not systemd; the
# check is run by hand below instead.)
pm run -d --name "$name" --privileged --cgroupns=host \
  -v /sys/fs/cgroup:/sys/fs/cgroup -v "$run_dir:/run/runcd" -v "$state_dir:/var/lib/runcd" "$image" \
  >/dev/null 2>"$work/run.log" || { cat "$work/run.log" >&2; fail "podman run failed"; }
for _ in $(seq 1 120); do
  pm healthcheck run "$name" >/dev/null 2>&1 && break
  sleep 0.5
done
pm healthcheck run "$name" >/dev/null || { pm logs "$name" >&2; fail "the HEALTHCHECK never passed"; }
phase "container $name is healthy (HEALTHCHECK: GET /readyz on the socket)"

ctl() { node "$repo/bin/runcctl.js" --host "unix://$run_dir/runcd.sock" "$@"; }
set -x
pm exec "$name" runcctl --version
ctl create "$id" --bundle /var/lib/runcd/bundles/demo
ctl list
ctl start "$id"
ctl exec "$id" -- ps
ctl kill "$id" SIGKILL
[ "$(ctl wait "$id")" = 137 ]
ctl state "$id" | grep -q '"exitCode": 137'
ctl delete "$id"
[ -z "$(ctl list -q)" ]
pm exec "$name" runcctl list
set +x
phase "lifecycle done through the image"

pm stop -t 20 "$name" >/dev/null
exit_code=$(pm inspect "$name" --format '{{.State.ExitCode}}')
pm logs "$name" 2>&1 | grep -q '"msg":"runcd stopped"' || { pm logs "$name" | tail -5 >&2; fail "no clean shutdown in the log"; }
[ "$exit_code" = 0 ] || fail "runcd exited $exit_code on SIGTERM"
phase "stopped with SIGTERM: graceful shutdown, exit 0"
# The upgrade the README describes, with systemd as PID 1 (this VM's PID 1 is not systemd, so the image is the
# only place to show it): the same image plus Debian's systemd and systemd/runcd.service as shipped. runcd is
# replaced by a new copy and `systemctl restart`ed while a container runs; KillMode=process must leave the
# container and its conmon alone, and the new runcd must take them over.
if [ "${SYSTEMD_PROOF:-1}" = 1 ]; then
  cat >"$work/Containerfile.systemd" <<EOF
FROM $image
RUN apt-get update && apt-get install -y --no-install-recommends systemd procps && rm -rf /var/lib/apt/lists/*
COPY systemd/runcd.service /etc/systemd/system/runcd.service
RUN systemctl enable runcd.service
HEALTHCHECK NONE
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/lib/systemd/systemd"]
EOF
  pm build --format docker --network host --pull=never -t localhost/runcd-systemd:proof -f "$work/Containerfile.systemd" . \
    >"$work/build-systemd.log" 2>&1 || { tail -20 "$work/build-systemd.log" >&2; fail "podman build (systemd) failed"; }
  phase "built localhost/runcd-systemd:proof (the image + systemd)"

  [ -d "$state_dir/bundles/demo" ] || scripts/make-busybox-bundle.sh "$state_dir/bundles/demo" >/dev/null
  # The host's cgroup hierarchy, as for the plain image: with a private one (cgroup v1 here) runc finds no
  # controllers to put the container in.
  pm run -d --name "$name-systemd" --privileged --systemd=always --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup \
    -v "$state_dir/bundles:/var/lib/runcd/bundles" localhost/runcd-systemd:proof >/dev/null 2>"$work/run.log" ||
    { cat "$work/run.log" >&2; fail "podman run (systemd) failed"; }
  # (podman exec warns on every call that it cannot add its conmon to a cgroup in the read-only hierarchy the
  # container sees; harmless, and filtered out.)
  in_systemd() { pm exec "$name-systemd" "$@" 2> >(grep -v 'Failed to add conmon to cgroupfs sandbox cgroup' >&2); }
  for _ in $(seq 1 120); do
    in_systemd runcctl list >/dev/null 2>&1 && break
    sleep 0.5
  done
  in_systemd systemctl is-active runcd >/dev/null ||
    { in_systemd journalctl -u runcd --no-pager | tail -20 >&2; fail "runcd.service did not start under systemd"; }
  phase "systemd is PID 1 and runcd.service is active"

  set -x
  in_systemd runcctl run -d --bundle /var/lib/runcd/bundles/demo "$id"
  old_main=$(in_systemd systemctl show -P MainPID runcd)
  container_pid=$(in_systemd runcctl state "$id" | sed -n 's/^ *"pid": \([0-9]*\),*$/\1/p')
  conmon_pid=$(in_systemd pgrep -x conmon)
  [ -n "$container_pid" ] && [ -n "$conmon_pid" ]
  # The upgrade: a new copy of runcd where /usr/local/bin/runcd points, then a restart.
  in_systemd sh -c 'cp -a /opt/runcd /opt/runcd-next && ln -sfn /opt/runcd-next/bin/runcd.js /usr/local/bin/runcd'
  in_systemd systemctl restart runcd
  new_main=$(in_systemd systemctl show -P MainPID runcd)
  [ "$new_main" != "$old_main" ]
  in_systemd kill -0 "$container_pid" "$conmon_pid"
  for _ in $(seq 1 60); do
    in_systemd runcctl list >/dev/null 2>&1 && break
    sleep 0.5
  done
  in_systemd runcctl list
  # The new runcd runs the new copy: its store's addon (better-sqlite3) is mapped from /opt/runcd-next.
  in_systemd grep -q '/opt/runcd-next/.*better_sqlite3.node' "/proc/$new_main/maps"
  in_systemd runcctl state "$id" | grep -q "\"pid\": $container_pid,"
  [ "$(in_systemd runcctl exec "$id" -- echo upgraded)" = upgraded ]
  in_systemd runcctl kill "$id" SIGKILL
  [ "$(in_systemd runcctl wait "$id")" = 137 ]
  in_systemd runcctl delete "$id"
  [ "$(in_systemd journalctl -u runcd --no-pager -o cat | grep -c '"msg":"runcd stopped"')" = 1 ]
  set +x
  phase "systemctl restart onto a new runcd: container pid $container_pid and its conmon untouched, taken over"
  pm stop -t 20 "$name-systemd" >/dev/null
fi

echo "prove-image: OK in $(($(date +%s) - started)) s"
