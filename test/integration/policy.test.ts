import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Container, ExecResult } from '../../src/schemas/container.js';
import type { EditableSpec } from '../helpers/editable-spec.js';
import { client, eventually, makeSandbox, RUNTIME_BINARY, startInProcess } from '../helpers/sandbox.js';

/** The bundle policy and the runtime limits against real runc. */

t.test('a runc spec bundle runs under runcd’s default seccomp profile', async (t) => {
  const sandbox = makeSandbox(t, 'seccomp');
  const api = client(await startInProcess(t, sandbox));
  const id = sandbox.id('c');
  t.equal((await api.post('/containers', { id, bundle: sandbox.bundle('b'), start: true })).status, 201);
  const status = await api.post<ExecResult>(`/containers/${id}/exec`, {
    args: ['grep', 'Seccomp:', '/proc/self/status'],
  });
  t.match(status.body.stdout, /^Seccomp:\s+2$/m, 'filter mode');
  const unshare = await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['unshare', '-U', 'true'] });
  t.not(unshare.body.exitCode, 0);
  t.match(unshare.body.stderr, /Operation not permitted/, 'no new user namespace from inside');
  const ps = await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['ps'] });
  t.equal(ps.body.exitCode, 0, 'ordinary work is unaffected');
});

t.test('runc runs the checked copy: editing config.json after create changes nothing', async (t) => {
  const sandbox = makeSandbox(t, 'copy');
  const daemon = await startInProcess(t, sandbox);
  const api = client(daemon);
  const bundle = sandbox.bundle('b');
  const id = sandbox.id('c');
  const created = await api.post<Container>('/containers', { id, bundle, start: true });
  t.equal(created.body.bundle, bundle, "the API shows the caller's bundle");
  const runtimeBundle = JSON.parse(
    execFileSync(RUNTIME_BINARY, [`--root=${sandbox.runtimeRoot}`, 'state', id]).toString(),
  ) as { bundle: string };
  t.equal(
    runtimeBundle.bundle,
    join(sandbox.stateDir, 'containers', id, 'bundle'),
    "runc's bundle is runcd's",
  );

  // The caller now asks for everything; the container and its execs must not get it.
  const configPath = join(bundle, 'config.json');
  const spec = JSON.parse(readFileSync(configPath, 'utf8')) as EditableSpec;
  spec.process.capabilities.bounding.push('CAP_SYS_ADMIN');
  spec.process.capabilities.effective.push('CAP_SYS_ADMIN');
  spec.hooks = { poststart: [{ path: '/bin/touch', args: ['touch', join(sandbox.dir, 'pwned')] }] };
  writeFileSync(configPath, JSON.stringify(spec));
  const capabilities = async () =>
    BigInt(
      '0x' +
        /CapEff:\s+([0-9a-f]+)/.exec(
          (
            await api.post<ExecResult>(`/containers/${id}/exec`, {
              args: ['grep', 'CapEff', '/proc/self/status'],
            })
          ).body.stdout,
        )![1],
    );
  const CAP_SYS_ADMIN = 1n << 21n;
  t.equal((await capabilities()) & CAP_SYS_ADMIN, 0n, 'exec has no CAP_SYS_ADMIN');
  await daemon.close();
  const restarted = client(await startInProcess(t, sandbox));
  const afterRestart = await restarted.post<ExecResult>(`/containers/${id}/exec`, {
    args: ['grep', 'CapEff', '/proc/self/status'],
  });
  t.equal(
    BigInt('0x' + /CapEff:\s+([0-9a-f]+)/.exec(afterRestart.body.stdout)![1]) & CAP_SYS_ADMIN,
    0n,
    'nor after a restart',
  );
  t.equal((await restarted.delete(`/containers/${id}?force=true`)).status, 204);
});

t.test('bind mounts from --allow-mount-source work; relaxations are deliberate', async (t) => {
  const sandbox = makeSandbox(t, 'mounts');
  const shared = join(sandbox.dir, 'shared');
  mkdirSync(shared);
  writeFileSync(join(shared, 'greeting'), 'hello from the host\n');
  const daemon = await startInProcess(t, sandbox, {
    allowMountSources: [shared],
    policy: { allowMissingNamespaces: ['network'] },
  });
  t.match(daemon.policy.relaxations(), [
    /allowMountSources/,
    /allowMissingNamespaces: may share the host's network/,
  ]);
  const api = client(daemon);
  const bundle = sandbox.bundle('b', ['sleep', '999999'], (raw) => {
    const spec = raw as unknown as EditableSpec;
    spec.mounts.push({ destination: '/shared', type: 'bind', source: shared, options: ['rbind', 'ro'] });
    spec.linux.namespaces = spec.linux.namespaces.filter((namespace) => namespace.type !== 'network');
  });
  const id = sandbox.id('c');
  t.equal((await api.post('/containers', { id, bundle, start: true })).status, 201);
  const read = await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['cat', '/shared/greeting'] });
  t.equal(read.body.stdout, 'hello from the host\n');
  const write = await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['touch', '/shared/x'] });
  t.not(write.body.exitCode, 0, 'read-only as asked');
  t.equal((await api.delete(`/containers/${id}?force=true`)).status, 204);
});

t.test('a full exec pool answers 503 with Retry-After, and frees up', async (t) => {
  const sandbox = makeSandbox(t, 'busy');
  const daemon = await startInProcess(t, sandbox, {
    processLimits: { maxSessions: 1, maxSessionsQueued: 0 },
  });
  const api = client(daemon);
  const id = sandbox.id('c');
  t.equal((await api.post('/containers', { id, bundle: sandbox.bundle('b'), start: true })).status, 201);
  const long = api.post<ExecResult>(`/containers/${id}/exec`, { args: ['sleep', '2'] });
  await eventually(async () => (daemon.runner.load.sessions === 1 ? true : undefined));
  const refused = await api.post(`/containers/${id}/exec`, { args: ['true'] });
  t.equal(refused.status, 503);
  t.equal(refused.body.code, 'runtime_busy');
  t.equal(refused.headers['retry-after'], '1');
  t.equal(
    (await api.post(`/containers/${id}/kill?signal=SIGUSR1`)).status,
    204,
    'commands have their own pool',
  );
  t.equal((await long).body.exitCode, 0);
  t.equal((await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['true'] })).body.exitCode, 0);
  t.equal((await api.delete(`/containers/${id}?force=true`)).status, 204);
});

t.test('a runtime call past its deadline is killed with its process group and answers 504', async (t) => {
  const sandbox = makeSandbox(t, 'deadline');
  // Fault injection around the real runc: `kill` hangs (in a child, so only a group kill reaches it).
  const hangPid = join(sandbox.dir, 'hang.pid');
  const wrapper = join(sandbox.dir, 'runc-hangs-on-kill');
  writeFileSync(
    wrapper,
    `#!/bin/sh\ncase " $* " in *" kill "*) sleep 300 & echo $! > ${hangPid}; wait; exit 1;; esac\nexec ${RUNTIME_BINARY} "$@"\n`,
    { mode: 0o755 },
  );
  const daemon = await startInProcess(t, sandbox, { runtimeBinary: wrapper, runtimeTimeoutMs: 1_000 });
  const id = sandbox.id('c');
  const api = client(daemon);
  t.equal((await api.post('/containers', { id, bundle: sandbox.bundle('b'), start: true })).status, 201);
  const timedOut = await api.post(`/containers/${id}/kill?signal=SIGUSR1`);
  t.equal(timedOut.status, 504);
  t.equal(timedOut.body.code, 'runtime_timeout');
  t.match(timedOut.body.detail, /kill did not finish within 1000 ms and was killed/);
  const sleeper = Number(readFileSync(hangPid, 'utf8'));
  await eventually(async () => {
    try {
      return /\) [ZX] /.test(readFileSync(`/proc/${sleeper}/stat`, 'utf8')) ? true : undefined;
    } catch {
      return true;
    }
  });
  t.pass('the hung grandchild was killed with its group');
  t.equal(
    (await api.get<Container>(`/containers/${id}`)).body.status,
    'running',
    'the container is unharmed',
  );
  t.equal((await api.delete(`/containers/${id}?force=true`)).status, 204);
});
