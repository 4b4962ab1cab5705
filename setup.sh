#!/usr/bin/env bash
# Sets up runcd on a fresh Debian 12 machine (as root) and starts the daemon on /run/runcd/runcd.sock.
#   ./setup.sh             install packages, build, make the demo bundle, start the daemon
#   ./setup.sh --no-start  everything but starting the daemon (what CI uses)
set -euo pipefail
cd "$(dirname "$0")"
start=1
[ "${1:-}" = "--no-start" ] && start=0

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (runc needs it)" >&2; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$node_major" -ge 20 ] || { echo "setup.sh: Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))" >&2; exit 1; }

# openssl: the tests make a throwaway CA for mutual TLS. tini: its static build is the init of `init: true`.
# systemd: systemd-analyze verifies the unit (CI). chromium: the test that clicks through Swagger UI at /docs.
# util-linux (setpriv) and libcap2-bin (capsh): the test that runs runcd under the unit's capability bounding set.
# skopeo, umoci: `docker load` unpacks docker save archives with them, `docker pull` copies from registries.
# docker-registry: the pull tests run their own on a loopback port; apache2-utils: htpasswd (bcrypt) for them.
# python3-docker (docker-py), docker-compose: the tests drive runcd's Docker socket with these real clients. They
# are installed without their Recommends: docker-compose recommends docker.io, whose dockerd would start on a
# systemd machine and take over the FORWARD chain (policy DROP) and a docker0 bridge.
# containernetworking-plugins (bridge, host-local, portmap, firewall in /usr/lib/cni), iproute2, iptables: networks;
# aardvark-dns: container names on user networks. gcc, libc6-dev: `npm run build` compiles the spawn helper
# (native/spawn-helper); without them the build warns and runcd forks through its slower Node helper.
packages=(runc conmon busybox-static tini openssl systemd chromium util-linux libcap2-bin skopeo umoci docker-registry
  apache2-utils python3-docker docker-compose containernetworking-plugins iproute2 iptables aardvark-dns gcc libc6-dev)
without_recommends=(python3-docker docker-compose)
missing=()
missing_bare=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 && continue
  if [[ " ${without_recommends[*]} " == *" $pkg "* ]]; then missing_bare+=("$pkg"); else missing+=("$pkg"); fi
done
if [ $((${#missing[@]} + ${#missing_bare[@]})) -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]} ${missing_bare[*]}"
  apt-get update -qq
  [ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ ${#missing_bare[@]} -eq 0 ] ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_bare[@]}" >/dev/null
fi

# The packaged registry service (listening on :5000) is not wanted: the tests start their own.
if [ -d /run/systemd/system ]; then
  systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/docker-registry ]; then
  /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
fi

npm ci --no-audit --no-fund
npm run build
ln -sf "$PWD/bin/runcd.js" /usr/local/bin/runcd
ln -sf "$PWD/bin/runcctl.js" /usr/local/bin/runcctl

install -d -m 0750 /run/runcd
install -d -m 0700 /var/lib/runcd
install -d -m 0755 /var/lib/runcd/bundles
[ -f /var/lib/runcd/bundles/demo/config.json ] || scripts/make-busybox-bundle.sh /var/lib/runcd/bundles/demo >/dev/null

[ "$start" = 1 ] || exit 0

if [ -d /run/systemd/system ]; then
  install -m 0644 systemd/runcd.service /etc/systemd/system/runcd.service
  systemctl daemon-reload
  systemctl enable --now runcd.service
  systemctl restart runcd.service
else
  # No systemd (a container or a minimal VM): run it in the background, in its own session.
  if [ -S /run/runcd/runcd.sock ] && curl -sf --unix-socket /run/runcd/runcd.sock http://localhost/healthz >/dev/null; then
    echo "setup.sh: runcd is already running"
  else
    setsid nohup /usr/local/bin/runcd >>/var/log/runcd.log 2>&1 < /dev/null &
  fi
fi
for _ in $(seq 1 100); do
  if curl -sf --unix-socket /run/runcd/runcd.sock http://localhost/healthz >/dev/null 2>&1; then
    echo "runcd is up: curl --unix-socket /run/runcd/runcd.sock http://localhost/containers"
    exit 0
  fi
  sleep 0.1
done
echo "setup.sh: runcd did not come up; see journalctl -u runcd or /var/log/runcd.log" >&2
exit 1
