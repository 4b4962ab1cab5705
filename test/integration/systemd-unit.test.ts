import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Container, ContainerStats, ExecResult } from '../../src/schemas/container.js';
import { DaemonProcess, makeSandbox, REPO_ROOT } from '../helpers/sandbox.js';

const UNIT = join(REPO_ROOT, 'systemd', 'runcd.service');

/** The [Service] section as directive → values (a directive may repeat). */
function serviceDirectives(text: string): Map<string, string[]> {
  const directives = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      continue;
    }
    if (section !== 'Service') continue;
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    directives.set(key, [...(directives.get(key) ?? []), line.slice(eq + 1)]);
  }
  return directives;
}

/** The capabilities the unit takes out of the bounding set (`CapabilityBoundingSet=~CAP_A CAP_B`). */
function droppedCapabilities(directives: Map<string, string[]>): string[] {
  const values = directives.get('CapabilityBoundingSet') ?? [];
  return values.flatMap((value) => {
    if (!value.startsWith('~')) throw new Error(`expected a ~ list of capabilities to drop: ${value}`);
    return value.slice(1).trim().split(/\s+/);
  });
}

t.test('systemd-analyze verify accepts the unit, without a single warning', async (t) => {
  // verify also checks that ExecStart exists: check a copy that points at this checkout's runcd.
  const copy = join(makeSandbox(t, 'unit').dir, 'runcd.service');
  writeFileSync(
    copy,
    readFileSync(UNIT, 'utf8').replace(/^ExecStart=\S+/m, `ExecStart=${join(REPO_ROOT, 'bin', 'runcd.js')}`),
  );
  const result = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
  t.equal(result.error, undefined, 'systemd-analyze is installed (setup.sh installs the systemd package)');
  t.equal(result.status, 0);
  t.equal(result.stderr, '', 'no warnings (verify exits 0 even for directives it ignores)');
});

t.test('the unit never kills containers and sets nothing containers would inherit', async (t) => {
  const directives = serviceDirectives(readFileSync(UNIT, 'utf8'));
  t.same(directives.get('KillMode'), ['process'], 'a stop or restart kills runcd only');
  t.same(directives.get('Delegate'), ['yes']);
  t.same(directives.get('RuntimeDirectoryPreserve'), ['yes'], "runc's state outlives a restart");
  t.ok(directives.has('StateDirectory') && directives.has('RuntimeDirectory'));
  t.match(directives.get('ExecStart'), [/^\/usr\/local\/bin\/runcd$/], 'the path setup.sh installs');
  const timeout = Number(/^(\d+)s$/.exec(directives.get('TimeoutStopSec')?.[0] ?? '')?.[1]);
  t.ok(timeout > 10, "systemd waits longer than runcd's 10 s grace period before SIGKILL");
  // Each of these would be inherited by conmon, runc and the containers (see the unit's comments).
  for (const directive of [
    'NoNewPrivileges',
    'SystemCallFilter',
    'SystemCallArchitectures',
    'RestrictAddressFamilies',
    'RestrictNamespaces',
    'LockPersonality',
    'MemoryDenyWriteExecute',
    'RestrictRealtime',
    'RestrictSUIDSGID',
    'ProtectClock',
    'PrivateTmp',
    'ProtectHome',
    'ProtectSystem',
    'ReadOnlyPaths',
    'InaccessiblePaths',
    'PrivateDevices',
    'ProtectProc',
    'ProtectKernelModules',
    'ProtectKernelLogs',
    'ProtectKernelTunables',
    'ProtectControlGroups',
    'ProtectHostname',
    'PrivateNetwork',
    'PrivateUsers',
    'PrivateMounts',
    'OOMScoreAdjust',
    'UMask',
    'LimitNOFILE',
    'User',
    'DynamicUser',
  ]) {
    t.notOk(directives.has(directive), `${directive} is not set`);
  }
  const known = new Set(
    execFileSync('setpriv', ['--list-caps'])
      .toString()
      .trim()
      .split('\n')
      .map((name) => `CAP_${name.toUpperCase()}`),
  );
  const dropped = droppedCapabilities(directives);
  t.ok(dropped.length > 0, 'the bounding set is narrowed');
  for (const capability of dropped) t.ok(known.has(capability), `${capability} is a real capability`);
  for (const needed of [
    'CAP_SYS_ADMIN',
    'CAP_SYS_PTRACE',
    'CAP_SYS_RESOURCE',
    'CAP_SETPCAP',
    'CAP_MKNOD',
    'CAP_BPF',
  ]) {
    t.notOk(dropped.includes(needed), `${needed} stays: runc needs it`);
  }
});

t.test("runc's whole lifecycle works under the unit's capability bounding set", async (t) => {
  const sandbox = makeSandbox(t, 'hardened');
  const dropped = droppedCapabilities(serviceDirectives(readFileSync(UNIT, 'utf8')));
  // setpriv applies the same restriction systemd would, to runcd and everything it starts.
  const boundingSet = dropped.map((capability) => `-${capability.slice(4).toLowerCase()}`).join(',');
  const policy = join(sandbox.dir, 'policy.json');
  writeFileSync(policy, JSON.stringify({ allowCapabilities: ['CAP_SYS_TIME'] }));
  const daemon = new DaemonProcess(sandbox, ['--policy', policy], false, [
    'setpriv',
    '--bounding-set',
    boundingSet,
    '--',
  ]);
  t.teardown(() => daemon.close());
  await daemon.start();

  const id = sandbox.id('c');
  const bundle = sandbox.bundle('sleeper');
  t.equal(
    (await daemon.request('POST', '/containers', { id, bundle })).status,
    201,
    'create (namespaces, mounts)',
  );
  t.equal((await daemon.request('POST', `/containers/${id}/start`)).status, 200, 'start');
  const exec = await daemon.request<ExecResult>('POST', `/containers/${id}/exec`, {
    args: ['sh', '-c', 'echo ok'],
  });
  t.match(exec.body, { exitCode: 0, stdout: 'ok\n' }, 'exec');
  const stats = await daemon.request<ContainerStats>('GET', `/containers/${id}/stats`);
  t.equal(stats.status, 200, 'stats (cgroups)');
  t.ok(stats.body.pids.current >= 1);
  t.equal((await daemon.request('POST', `/containers/${id}/pause`)).status, 200, 'pause (freezer)');
  t.equal((await daemon.request('POST', `/containers/${id}/resume`)).status, 200, 'resume');
  t.equal((await daemon.request('POST', `/containers/${id}/kill?signal=SIGKILL`)).status, 204, 'kill');
  t.match((await daemon.request<Container>('GET', `/containers/${id}`)).body, {
    status: 'stopped',
    exitCode: 137,
  });
  t.equal((await daemon.request('DELETE', `/containers/${id}`)).status, 204, 'delete');

  // The restriction really applied: runcd's own bounding set lacks the dropped capabilities.
  const status = readFileSync(`/proc/${daemon.pid()}/status`, 'utf8');
  t.match(status, /^Name:\s+node$/m, 'setpriv exec-ed runcd in place');
  const bounding = /^CapBnd:\s+([0-9a-f]+)/m.exec(status)![1]!;
  const decoded = execFileSync('capsh', [`--decode=${bounding}`]).toString();
  for (const capability of dropped)
    t.notMatch(decoded, capability.toLowerCase(), `runcd runs without ${capability}`);

  // A container granted one of them by policy fails at runc, with runc's words.
  const wantsClock = sandbox.bundle('clock', ['sleep', '999999'], (spec) => {
    const capabilities = (spec.process as { capabilities: Record<string, string[]> }).capabilities;
    for (const set of Object.values(capabilities)) set.push('CAP_SYS_TIME');
  });
  const refused = await daemon.request('POST', '/containers', {
    id: sandbox.id('clock'),
    bundle: wantsClock,
  });
  t.equal(refused.status, 422, 'a capability outside the bounding set cannot be granted');
  t.match(refused.body, { code: 'runtime_create_failed' });
});
