#!/usr/bin/env bash
# Makes an OCI bundle with a static busybox rootfs, like the seed lesson's "Prepare the Bundle" step:
#   scripts/make-busybox-bundle.sh DIR [ARG...]     (default process: sleep 999999)
# config.json comes from `runc spec`, edited with node (never with sed), with terminal set to false; with
# TERMINAL=true it keeps `runc spec`'s "terminal": true (a process on a pty, to attach to).
set -euo pipefail
dir=${1:?usage: make-busybox-bundle.sh DIR [ARG...]}
shift
[ $# -gt 0 ] || set -- sleep 999999
# busybox-static installs a statically linked /bin/busybox, which runs inside any rootfs.
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "busybox not found: apt-get install -y busybox-static" >&2; exit 1; }
mkdir -p "$dir/rootfs/bin" "$dir/rootfs/proc" "$dir/rootfs/dev" "$dir/rootfs/sys" "$dir/rootfs/tmp"
cp "$busybox" "$dir/rootfs/bin/busybox"
# Applets are linked under /bin, where runc finds them through the default PATH (the seed's pitfall).
applets=$("$dir/rootfs/bin/busybox" --list | tr '\n' ' ')
runtime=${RUNTIME:-runc}
rm -f "$dir/config.json"
(cd "$dir" && "$runtime" spec)
node - "$dir" "$applets" "$@" <<'JS'
const fs = require('node:fs');
const [dir, applets, ...args] = process.argv.slice(2);
for (const applet of applets.split(' ').filter((name) => name && name !== 'busybox')) {
  fs.rmSync(`${dir}/rootfs/bin/${applet}`, { force: true });
  fs.symlinkSync('busybox', `${dir}/rootfs/bin/${applet}`);
}
const file = `${dir}/config.json`;
const spec = JSON.parse(fs.readFileSync(file, 'utf8'));
spec.process.args = args;
spec.process.terminal = process.env.TERMINAL === 'true';
fs.writeFileSync(file, JSON.stringify(spec, null, 2) + '\n');
JS
echo "$dir"
