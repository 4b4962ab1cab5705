import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { generateConfig, mergeResources, resourceUpdate } from '../../src/bundles/config-generator.js';
import { findExecutable, resolveInRootfs } from '../../src/bundles/rootfs-lookup.js';
import { clampRlimits, parseProcLimits } from '../../src/runtime/host-limits.js';
import type { OciSpec } from '../../src/runtime/oci.js';
import { resourceUpdateArgs } from '../../src/runtime/runc.js';

/** What `runc spec` 1.1 prints, trimmed to the fields the generator touches. */
const RUNC_SPEC: OciSpec = {
  ociVersion: '1.0.2-dev',
  process: {
    terminal: true,
    user: { uid: 0, gid: 0 },
    args: ['sh'],
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'],
    cwd: '/',
    rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
    noNewPrivileges: true,
  },
  root: { path: 'rootfs', readonly: true },
  hostname: 'runc',
  mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
  linux: { resources: { devices: [{ allow: false, access: 'rwm' }] }, namespaces: [{ type: 'pid' }] },
};

const options = {
  bundleId: 'web',
  rootPath: 'rootfs',
  initBinary: '/usr/bin/tini-static',
  hostLimits: new Map(),
};

t.test("fields are set on runc spec's object; the rest stays runc's default", async (t) => {
  const spec = generateConfig(
    RUNC_SPEC,
    {
      process: { args: ['httpd', '-f'], env: ['TERM=dumb', 'MODE=demo'], cwd: '/srv', user: '1000:100' },
      readonlyRootfs: false,
      resources: { memoryBytes: 64 * 1024 * 1024, cpus: 1.5, pidsLimit: 32 },
      mounts: [{ destination: '/data', source: '/srv/data', readonly: true }],
    },
    options,
  );
  t.match(spec.process, {
    terminal: false,
    args: ['httpd', '-f'],
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=dumb', 'MODE=demo'],
    cwd: '/srv',
    user: { uid: 1000, gid: 100 },
    noNewPrivileges: true,
  });
  t.same(spec.root, { path: 'rootfs', readonly: false });
  t.equal(spec.hostname, 'web', 'the bundle id by default');
  t.same(spec.mounts?.[1], {
    destination: '/data',
    type: 'bind',
    source: '/srv/data',
    options: ['rbind', 'nosuid', 'nodev', 'ro'],
  });
  t.same(spec.linux?.resources, {
    devices: [{ allow: false, access: 'rwm' }],
    memory: { limit: 64 * 1024 * 1024 },
    cpu: { quota: 150000, period: 100000 },
    pids: { limit: 32 },
  });
  t.equal(RUNC_SPEC.process?.terminal, true, 'the cached runc spec is not modified');
});

t.test('init puts tini in front of the command and mounts it read-only', async (t) => {
  const spec = generateConfig(RUNC_SPEC, { process: { args: ['sleep', '10'] }, init: true }, options);
  t.same(spec.process?.args, ['/dev/init', '--', 'sleep', '10']);
  t.same(spec.mounts?.at(-1), {
    destination: '/dev/init',
    type: 'bind',
    source: '/usr/bin/tini-static',
    options: ['bind', 'ro', 'nosuid', 'nodev'],
  });
});

t.test("rlimits are clamped to the host's hard limits", async (t) => {
  const host = parseProcLimits(
    [
      'Limit                     Soft Limit           Hard Limit           Units     ',
      'Max cpu time              unlimited            unlimited            seconds   ',
      'Max open files            20000                20000                files     ',
      'Max processes             96364                96364                processes ',
    ].join('\n'),
  );
  t.same(
    [...host],
    [
      ['RLIMIT_NOFILE', 20000],
      ['RLIMIT_NPROC', 96364],
    ],
  );
  t.same(
    clampRlimits(
      [
        { type: 'RLIMIT_NOFILE', soft: 65536, hard: 1048576 },
        { type: 'RLIMIT_NPROC', soft: 10, hard: 100 },
        { type: 'RLIMIT_CPU', soft: 5, hard: 10 },
      ],
      host,
    ),
    [
      { type: 'RLIMIT_NOFILE', soft: 20000, hard: 20000 },
      { type: 'RLIMIT_NPROC', soft: 10, hard: 100 },
      { type: 'RLIMIT_CPU', soft: 5, hard: 10 },
    ],
  );
  const spec = generateConfig(
    RUNC_SPEC,
    { process: { args: ['sh'], rlimits: [{ type: 'RLIMIT_NOFILE', soft: 50000, hard: 50000 }] } },
    { ...options, hostLimits: host },
  );
  t.same(spec.process?.rlimits, [{ type: 'RLIMIT_NOFILE', soft: 20000, hard: 20000 }]);
});

t.test('resource updates become runc update flags and merge into the config', async (t) => {
  t.same(resourceUpdateArgs(resourceUpdate({ memoryBytes: 8388608, cpus: 0.25, pidsLimit: 50 })), [
    '--memory',
    '8388608',
    '--cpu-period',
    '100000',
    '--cpu-quota',
    '25000',
    '--pids-limit',
    '50',
  ]);
  t.same(resourceUpdateArgs(resourceUpdate({ pidsLimit: 7 })), ['--pids-limit', '7']);
  const merged = mergeResources(structuredClone(RUNC_SPEC), { pidsLimit: 7 });
  t.same(merged.linux?.resources, { devices: [{ allow: false, access: 'rwm' }], pids: { limit: 7 } });
});

t.test('lookups resolve symlinks inside the rootfs, never on the host', async (t) => {
  const rootfs = mkdtempSync(join(tmpdir(), 'runcd-lookup-'));
  t.teardown(() => rmSync(rootfs, { recursive: true, force: true }));
  mkdirSync(join(rootfs, 'usr', 'bin'), { recursive: true });
  mkdirSync(join(rootfs, 'etc'));
  writeFileSync(join(rootfs, 'usr', 'bin', 'app'), '#!/bin/sh\n', { mode: 0o755 });
  writeFileSync(join(rootfs, 'usr', 'bin', 'data'), 'not executable', { mode: 0o644 });
  symlinkSync('usr/bin', join(rootfs, 'bin'));
  symlinkSync('/usr/bin/app', join(rootfs, 'usr', 'bin', 'absolute'));
  symlinkSync('../../../../../../etc', join(rootfs, 'escape'));
  symlinkSync('/etc', join(rootfs, 'hostetc'));

  t.equal(await resolveInRootfs(rootfs, '/bin/app'), join(rootfs, 'usr', 'bin', 'app'));
  t.equal(await resolveInRootfs(rootfs, '/usr/bin/absolute'), join(rootfs, 'usr', 'bin', 'app'));
  t.equal(await resolveInRootfs(rootfs, '/escape'), join(rootfs, 'etc'), '.. stops at the rootfs');
  t.equal(await resolveInRootfs(rootfs, '/hostetc/passwd'), undefined, "the host's /etc is never looked at");

  const env = ['PATH=/sbin:/bin'];
  t.same(await findExecutable(rootfs, 'app', env, '/'), { found: true, searched: '/sbin:/bin' });
  t.same(await findExecutable(rootfs, 'data', env, '/'), { found: false, searched: '/sbin:/bin' });
  t.same(await findExecutable(rootfs, 'absolute', ['PATH=/usr/bin'], '/'), {
    found: true,
    searched: '/usr/bin',
  });
  t.same(await findExecutable(rootfs, './bin/app', env, '/'), { found: true, searched: '/./bin/app' });
  t.same(await findExecutable(rootfs, 'passwd', ['PATH=/hostetc'], '/'), {
    found: false,
    searched: '/hostetc',
  });
});
