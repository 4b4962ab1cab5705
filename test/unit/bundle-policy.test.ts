import {
  DEFAULT_POLICY_RULES,
  POLICY_RULES,
  PolicyFile,
  type PolicyRuleName,
} from '../../src/bundle-checks/policy-rules.js';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { DomainError } from '../../src/errors.js';
import {
  BundlePolicy,
  loadPolicyFile,
  type BundlePolicyRules,
} from '../../src/bundle-checks/bundle-policy.js';
import { findMisspelledFields } from '../../src/bundle-checks/oci-field-spelling.js';
import type { OciSpec } from '../../src/runtime/oci.js';

/** What `runc spec` (1.1) emits, with terminal false as the seed lesson edits it. */
function runcSpec(): OciSpec {
  const caps = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
  return {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: ['sleep', '999999'],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, ambient: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'runc',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev'] },
      {
        destination: '/dev/mqueue',
        type: 'mqueue',
        source: 'mqueue',
        options: ['nosuid', 'noexec', 'nodev'],
      },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'ro'] },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: ['/proc/kcore', '/sys/firmware'],
      readonlyPaths: ['/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

interface World {
  dir: string;
  stateDir: string;
  bundleRoot: string;
  bundle: string;
  shared: string;
}

function makeWorld(t: Test): World {
  const dir = mkdtempSync(join(tmpdir(), 'runcd-policy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stateDir = join(dir, 'state');
  const bundleRoot = join(stateDir, 'bundles');
  const bundle = join(bundleRoot, 'b');
  const shared = join(dir, 'shared');
  for (const path of [join(bundle, 'rootfs'), join(bundle, 'data'), shared, join(stateDir, 'exits')]) {
    mkdirSync(path, { recursive: true });
  }
  return { dir, stateDir, bundleRoot, bundle, shared };
}

async function refusal(
  policy: BundlePolicy,
  spec: OciSpec,
  bundle: string,
): Promise<{ status: number; code: string; detail: string }> {
  try {
    await policy.apply(spec, bundle, bundle);
  } catch (error) {
    if (error instanceof DomainError)
      return { status: error.status, code: error.code, detail: error.message };
    throw error;
  }
  return { status: 200, code: 'accepted', detail: '' };
}

/** runcSpec() as a test edits it: loosely typed on purpose, since the point is to write nonsense into it. */
interface EditableSpec {
  process: {
    cwd: unknown;
    noNewPrivileges: unknown;
    capabilities: Record<string, unknown> & { bounding: string[]; effective: string[] };
  } & Record<string, unknown>;
  mounts: unknown[];
  linux: {
    namespaces: Array<{ type: string; path?: string }>;
    resources: { devices: unknown[] };
  } & Record<string, unknown>;
  [key: string]: unknown;
}

const edit = (change: (spec: EditableSpec) => void): OciSpec => {
  const spec = runcSpec() as unknown as EditableSpec;
  change(spec);
  return spec as unknown as OciSpec;
};

t.test("runc spec's config passes the default policy and comes back completed", async (t) => {
  const world = makeWorld(t);
  const policy = new BundlePolicy({}, { stateDir: world.stateDir });
  const outcome = await policy.apply(runcSpec(), world.bundle, world.bundle);
  t.equal(outcome.rootfs, join(world.bundle, 'rootfs'));
  t.equal(outcome.spec.root?.path, join(world.bundle, 'rootfs'), 'root.path is absolute for runcd’s copy');
  const linux = outcome.spec.linux as {
    seccomp: { defaultAction: string; syscalls: Array<{ names: string[] }> };
    maskedPaths: string[];
    readonlyPaths: string[];
  };
  t.equal(linux.seccomp.defaultAction, 'SCMP_ACT_ALLOW', 'the default seccomp profile was added');
  t.ok(
    linux.seccomp.syscalls.some((rule) => rule.names.includes('unshare')),
    'it refuses unshare',
  );
  t.ok(linux.maskedPaths.includes('/proc/keys'), 'standard masked paths were added');
  t.ok(linux.readonlyPaths.includes('/proc/irq'), 'standard read-only paths were added');
  t.equal(linux.maskedPaths.filter((path) => path === '/proc/kcore').length, 1, 'no duplicates');
  t.same(policy.relaxations(), [], 'the default policy relaxes nothing');
  const original = runcSpec();
  await policy.apply(original, world.bundle, world.bundle);
  t.same(original, runcSpec(), "the caller's parsed config is not modified");
});

t.test('each rule refuses with a 403 that names the field', async (t) => {
  const world = makeWorld(t);
  symlinkSync(join(world.bundle, 'rootfs'), join(world.bundle, 'linked'));
  const policy = new BundlePolicy({}, { stateDir: world.stateDir });
  const cases: Array<[string, OciSpec, string, RegExp]> = [
    [
      'hooks',
      edit((s) => (s.hooks = { prestart: [{ path: '/bin/sh' }] })),
      'policy_hooks',
      /hooks\.prestart: hooks run programs on the host/,
    ],
    [
      'createRuntime hook',
      edit((s) => (s.hooks = { createRuntime: [{ path: '/x' }] })),
      'policy_hooks',
      /hooks\.createRuntime/,
    ],
    [
      'absolute root.path',
      edit((s) => (s.root = { path: '/' })),
      'policy_root_path',
      /root\.path: "\/" is absolute/,
    ],
    [
      'escaping root.path',
      edit((s) => (s.root = { path: '../..' })),
      'policy_root_path',
      /root\.path: "\.\.\/\.\." escapes the bundle/,
    ],
    [
      'root.path through a symlink',
      edit((s) => (s.root = { path: 'linked' })),
      'policy_root_path',
      /passes through a symlink/,
    ],
    [
      'bind mount of /',
      edit((s) => s.mounts.push({ destination: '/host', type: 'bind', source: '/', options: ['rbind'] })),
      'policy_mount_source',
      /mounts\[7\]\.source: "\/" is the host's root directory/,
    ],
    [
      'bind mount of /etc',
      edit((s) => s.mounts.push({ destination: '/e', source: '/etc', options: ['bind'] })),
      'policy_mount_source',
      /"\/etc" is outside the allowed mount sources; start runcd with --allow-mount-source/,
    ],
    [
      'bind mount of /proc',
      edit((s) => s.mounts.push({ destination: '/p', type: 'bind', source: '/proc/1' })),
      'policy_mount_source',
      /is under \/proc/,
    ],
    [
      'docker socket',
      edit((s) => s.mounts.push({ destination: '/d.sock', type: 'bind', source: '/var/run/docker.sock' })),
      'policy_mount_source',
      /docker\.sock/,
    ],
    [
      'state dir',
      edit((s) => s.mounts.push({ destination: '/s', type: 'bind', source: world.stateDir })),
      'policy_mount_source',
      /contains runcd's state directory/,
    ],
    [
      'inside state dir',
      edit((s) => s.mounts.push({ destination: '/s', type: 'bind', source: join(world.stateDir, 'exits') })),
      'policy_mount_source',
      /inside runcd's state directory/,
    ],
    [
      'overlay',
      edit((s) =>
        s.mounts.push({ destination: '/o', type: 'overlay', source: 'overlay', options: ['lowerdir=/etc'] }),
      ),
      'policy_mount_type',
      /mounts\[7\]\.type: "overlay" is not an allowed filesystem type/,
    ],
    [
      'second procfs',
      edit((s) => s.mounts.push({ destination: '/mnt/proc', type: 'proc', source: 'proc' })),
      'policy_mount_type',
      /only be mounted at \/proc/,
    ],
    [
      'dropped pid namespace',
      edit((s) => (s.linux.namespaces = s.linux.namespaces.filter((n) => n.type !== 'pid'))),
      'policy_namespace',
      /linux\.namespaces: the pid namespace is required/,
    ],
    [
      'no linux section',
      edit((s) => delete (s as Record<string, unknown>).linux),
      'policy_namespace',
      /the mount namespace is required/,
    ],
    [
      'joined network namespace',
      edit((s) => (s.linux.namespaces[1] = { type: 'network', path: '/proc/1/ns/net' })),
      'policy_namespace',
      /linux\.namespaces\[1\]\.path: joining an existing network namespace/,
    ],
    [
      'CAP_SYS_ADMIN',
      edit((s) => s.process.capabilities.bounding.push('CAP_SYS_ADMIN')),
      'policy_capability',
      /process\.capabilities\.bounding: CAP_SYS_ADMIN is beyond Docker's default capability set/,
    ],
    [
      'lower-case sys_admin',
      edit((s) => s.process.capabilities.effective.push('sys_admin')),
      'policy_capability',
      /sys_admin is beyond/,
    ],
    [
      'cwd /proc/self/fd/7',
      edit((s) => (s.process.cwd = '/proc/self/fd/7')),
      'policy_cwd',
      /process\.cwd: "\/proc\/self\/fd\/7" is under \/proc/,
    ],
    [
      'cwd sneaking into /proc',
      edit((s) => (s.process.cwd = '//tmp/../proc/1/cwd')),
      'policy_cwd',
      /is under \/proc/,
    ],
    ['relative cwd', edit((s) => (s.process.cwd = 'tmp')), 'policy_cwd', /"tmp" is relative/],
    [
      'all devices',
      edit((s) => s.linux.resources.devices.push({ allow: true, access: 'rwm' })),
      'policy_devices',
      /linux\.resources\.devices\[1\]: grants "rwm" on every device/,
    ],
    [
      'noNewPrivileges false',
      edit((s) => (s.process.noNewPrivileges = false)),
      'policy_no_new_privileges',
      /process\.noNewPrivileges: must be true/,
    ],
    [
      'cgroupsPath',
      edit((s) => (s.linux.cgroupsPath = '/system.slice/ssh.service')),
      'policy_cgroups_path',
      /linux\.cgroupsPath/,
    ],
  ];
  for (const [name, spec, code, detail] of cases) {
    const answer = await refusal(policy, spec, world.bundle);
    t.equal(answer.status, 403, `${name}: status`);
    t.equal(answer.code, code, `${name}: code`);
    t.match(answer.detail, detail, `${name}: detail names the field`);
  }
  const several = await refusal(
    policy,
    edit((s) => {
      s.hooks = { poststop: [{ path: '/x' }] };
      s.process.cwd = '/sys';
    }),
    world.bundle,
  );
  t.match(several.detail, /hooks\.poststop: .*; process\.cwd: /, 'every violation is listed');
  const strictSeccomp = new BundlePolicy({ missingSeccomp: 'refuse' }, { stateDir: world.stateDir });
  t.match(await refusal(strictSeccomp, runcSpec(), world.bundle), { status: 403, code: 'policy_seccomp' });
});

t.test('structural nonsense is a 400, never a crash', async (t) => {
  const world = makeWorld(t);
  const policy = new BundlePolicy();
  const cases: Array<[OciSpec, RegExp]> = [
    [edit((s) => ((s as Record<string, unknown>).mounts = 'all')), /mounts: must be an array/],
    [edit((s) => s.mounts.push(null)), /mounts\[7\]: must be an object/],
    [
      edit((s) => s.mounts.push({ destination: '/x', type: 'bind' })),
      /mounts\[7\]\.source: a bind mount needs a source/,
    ],
    [edit((s) => s.mounts.push({ destination: '/x', source: 'x' })), /mounts\[7\]\.type: is missing/],
    [
      edit((s) => s.mounts.push({ destination: '/x', type: 'bind', source: 'no-such-dir' })),
      /"no-such-dir" does not exist on the host/,
    ],
    [
      edit((s) => ((s.linux as Record<string, unknown>).namespaces = { pid: true })),
      /linux\.namespaces: must be an array/,
    ],
    [edit((s) => ((s as Record<string, unknown>).linux = [])), /linux: must be an object/],
    [
      edit((s) => ((s.process as Record<string, unknown>).capabilities = ['CAP_KILL'])),
      /process\.capabilities: must be an object/,
    ],
    [
      edit((s) => ((s.process.capabilities as Record<string, unknown>).bounding = 'CAP_KILL')),
      /process\.capabilities\.bounding: must be an array/,
    ],
    [edit((s) => (s.process.cwd = 7)), /process\.cwd: must be a string/],
    [edit((s) => (s.hooks = 'x')), /hooks: must be an object/],
    [edit((s) => (s.linux.seccomp = 'unconfined')), /linux\.seccomp: must be an object/],
    [edit((s) => (s.linux.maskedPaths = '/proc')), /linux\.maskedPaths: must be an array of strings/],
  ];
  for (const [spec, detail] of cases) {
    const answer = await refusal(policy, spec, world.bundle);
    t.equal(answer.status, 400, String(detail));
    t.equal(answer.code, 'bundle_invalid_config');
    t.match(answer.detail, detail);
  }
});

t.test('bind mounts: own bundle and the allowlist pass, rewritten to absolute real paths', async (t) => {
  const world = makeWorld(t);
  symlinkSync('/etc', join(world.shared, 'escape'));
  const socketPath = join(world.shared, 'docker');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const policy = new BundlePolicy({ allowMountSources: [world.shared] }, { stateDir: world.stateDir });
  const outcome = await policy.apply(
    edit((s) => {
      s.mounts.push({ destination: '/data', type: 'bind', source: 'data', options: ['rbind', 'ro'] });
      s.mounts.push({ destination: '/shared', type: 'bind', source: world.shared });
    }),
    world.bundle,
    world.bundle,
  );
  t.equal(outcome.spec.mounts?.[7]?.source, join(world.bundle, 'data'), 'relative source made absolute');
  t.equal(outcome.spec.mounts?.[8]?.source, world.shared);
  const escape = await refusal(
    policy,
    edit((s) => s.mounts.push({ destination: '/e', type: 'bind', source: join(world.shared, 'escape') })),
    world.bundle,
  );
  t.match(escape, { status: 403, code: 'policy_mount_source', detail: /\(\/etc\) is outside the allowed/ });
  const socket = await refusal(
    policy,
    edit((s) => s.mounts.push({ destination: '/d', type: 'bind', source: socketPath })),
    world.bundle,
  );
  t.match(socket, { status: 403, detail: /is a socket; sockets are never mounted/ });
  t.match(policy.relaxations(), [/allowMountSources: bind mounts may come from/]);
});

t.test('each relaxation allows exactly its rule and is listed', async (t) => {
  const world = makeWorld(t);
  const relaxed: Array<[Partial<BundlePolicyRules>, OciSpec]> = [
    [{ allowHooks: true }, edit((s) => (s.hooks = { prestart: [{ path: '/bin/true' }] }))],
    [{ allowRootfsOutsideBundle: true }, edit((s) => (s.root = { path: join(world.bundle, 'rootfs') }))],
    [
      { allowMountTypes: ['overlay'] },
      edit((s) => s.mounts.push({ destination: '/o', type: 'overlay', source: 'o' })),
    ],
    [{ allowMissingNamespaces: ['network'] }, edit((s) => s.linux.namespaces.splice(1, 1))],
    [{ allowNamespaceJoins: true }, edit((s) => (s.linux.namespaces[1]!.path = '/proc/1/ns/net'))],
    [
      { allowCapabilities: ['CAP_SYS_PTRACE'] },
      edit((s) => s.process.capabilities.bounding.push('CAP_SYS_PTRACE')),
    ],
    [{ allowAllDevices: true }, edit((s) => s.linux.resources.devices.push({ allow: true, access: 'rwm' }))],
    [{ allowNewPrivileges: true }, edit((s) => (s.process.noNewPrivileges = false))],
    [{ allowCgroupsPath: true }, edit((s) => (s.linux.cgroupsPath = 'runcd/x'))],
    [{ allowKernelFsCwd: true }, edit((s) => (s.process.cwd = '/proc'))],
  ];
  for (const [rules, spec] of relaxed) {
    const name = Object.keys(rules)[0]! as PolicyRuleName;
    const refused = await refusal(new BundlePolicy(), spec, world.bundle);
    t.equal(refused.status, 403, `${name}: refused by default`);
    t.equal(refused.code, POLICY_RULES[name].refusal, `${name}: refused with the rule's own code`);
    const policy = new BundlePolicy(rules, { stateDir: world.stateDir });
    t.equal((await refusal(policy, spec, world.bundle)).status, 200, `${name}: allowed when relaxed`);
    t.match(policy.relaxations(), [new RegExp(`^${name}`)], `${name}: listed for the startup log`);
  }
  const unfiltered = new BundlePolicy({ missingSeccomp: 'allow', allowUnmaskedPaths: true });
  const outcome = await unfiltered.apply(runcSpec(), world.bundle, world.bundle);
  t.equal((outcome.spec.linux as Record<string, unknown>).seccomp, undefined, 'no profile added');
  t.same((outcome.spec.linux as Record<string, unknown>).maskedPaths, ['/proc/kcore', '/sys/firmware']);
  t.equal(unfiltered.relaxations().length, 2);
  // Every rule of the one list is exercised here (allowMountSources has its own test above).
  const covered = [
    ...relaxed.map(([rules]) => Object.keys(rules)[0]!),
    'missingSeccomp',
    'allowUnmaskedPaths',
  ];
  t.same(
    [...covered, 'allowMountSources'].sort(),
    Object.keys(POLICY_RULES).sort(),
    'no rule without a check',
  );
});

t.test('the policy file, its defaults and its log lines come from one rule list', async (t) => {
  for (const [name, rule] of Object.entries(POLICY_RULES)) {
    t.same(DEFAULT_POLICY_RULES[name as PolicyRuleName], rule.default, `${name}: default`);
    t.ok(PolicyFile.shape[name as PolicyRuleName], `${name}: a field of the policy file`);
    t.equal(PolicyFile.shape[name as PolicyRuleName].description, rule.description, `${name}: documented`);
  }
  t.same(new BundlePolicy().relaxations(), [], 'the defaults relax nothing');
});

t.test('exec processes: cwd under /proc, /sys or /dev is refused', async (t) => {
  const policy = new BundlePolicy();
  const process = { user: { uid: 0, gid: 0 }, args: ['ls'], cwd: '/proc/self/fd/7' };
  t.throws(() => policy.checkExecProcess(process), { status: 403, code: 'policy_cwd', message: /^cwd: / });
  t.doesNotThrow(() => policy.checkExecProcess({ ...process, cwd: '/tmp' }));
  t.doesNotThrow(() => new BundlePolicy({ allowKernelFsCwd: true }).checkExecProcess(process));
});

t.test('keys that Go would fold onto an OCI field are found', async (t) => {
  t.same(findMisspelledFields({ Hooks: {} }), [{ path: 'Hooks', key: 'Hooks', canonical: 'hooks' }]);
  t.same(
    findMisspelledFields({ linux: { SECCOMP: {}, namespaces: [{ TYPE: 'pid' }] } }).map((f) => f.path),
    ['linux.SECCOMP', 'linux.namespaces[0].TYPE'],
  );
  t.same(
    findMisspelledFields({ ['hoo\u212As']: {} }).map((f) => f.canonical),
    ['hooks'],
    'Kelvin sign',
  );
  t.same(
    findMisspelledFields({ ['\u017Fysctl']: {} }).map((f) => f.canonical),
    ['sysctl'],
    'long s',
  );
  t.same(findMisspelledFields({ annotations: { Hooks: 'a label, not a field' } }), [], 'map keys are data');
  t.same(findMisspelledFields(runcSpec()), [], "runc spec's output is spelled right");
  t.same(
    findMisspelledFields({ somethingNew: { Whatever: 1 } }),
    [],
    'unknown fields are ignored, as Go does',
  );
});

t.test('--policy files are validated field by field', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'runcd-policy-file-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  t.same(await loadPolicyFile(write('ok.json', '{"allowHooks": true, "missingSeccomp": "refuse"}')), {
    allowHooks: true,
    missingSeccomp: 'refuse',
  });
  await t.rejects(loadPolicyFile(write('typo.json', '{"allowHook": true}')), /allowHook/);
  await t.rejects(loadPolicyFile(write('bad.json', '{')), /not valid JSON/);
  await t.rejects(
    loadPolicyFile(write('caps.json', '{"allowCapabilities": ["sys_admin"]}')),
    /allowCapabilities\.0/,
  );
  await t.rejects(loadPolicyFile(join(dir, 'missing.json')), /cannot read it/);
});

t.test("a named volume's data may be mounted from the state dir; nothing else there may", async (t) => {
  const world = makeWorld(t);
  const volumesDir = join(world.stateDir, 'volumes');
  mkdirSync(join(volumesDir, 'cache', '_data'), { recursive: true });
  const policy = new BundlePolicy({}, { stateDir: world.stateDir }, { volumesDir });
  const mounting = (source: string): OciSpec => {
    const spec = runcSpec();
    spec.mounts = [...(spec.mounts ?? []), { destination: '/v', type: 'bind', source, options: ['rbind'] }];
    return spec;
  };
  t.equal((await refusal(policy, mounting(join(volumesDir, 'cache', '_data')), world.bundle)).status, 200);
  t.match(await refusal(policy, mounting(volumesDir), world.bundle), {
    status: 403,
    detail: /inside runcd's state directory/,
  });
  t.match(await refusal(policy, mounting(join(volumesDir, 'cache')), world.bundle), { status: 403 });
  t.match(await refusal(policy, mounting(join(world.stateDir, 'exits')), world.bundle), { status: 403 });
});
