import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import t from 'tap';
import type { Container } from '../../src/schemas/container.js';
import { DaemonProcess, eventually, makeSandbox } from '../helpers/sandbox.js';

t.test(
  'containers survive a SIGKILL of the daemon, and exits while it is down keep their code',
  async (t) => {
    const sandbox = makeSandbox(t, 'restart');
    const bundle = sandbox.bundle('b');
    const shortLived = sandbox.bundle('short', ['sh', '-c', 'sleep 1; exit 42']);
    const daemon = new DaemonProcess(sandbox);
    t.teardown(() => daemon.close());
    await daemon.start();

    const survivor = sandbox.id('survivor');
    const dying = sandbox.id('dying');
    const created = await daemon.request<Container>('POST', '/containers', {
      id: survivor,
      bundle,
      start: true,
    });
    t.equal(created.status, 201);
    const pid = created.body.pid;
    t.equal(
      (await daemon.request('POST', '/containers', { id: dying, bundle: shortLived, start: true })).status,
      201,
    );

    await daemon.stop('SIGKILL');
    t.ok(existsSync(`/proc/${pid}`), 'the container outlives its daemon');
    // `dying` exits (code 42) while no daemon runs.
    await new Promise((resolve) => setTimeout(resolve, 1500));

    await daemon.start();
    const after = await daemon.request<Container>('GET', `/containers/${survivor}`);
    t.match(after.body, { status: 'running', pid }, 'same container, same pid');
    const exec = await daemon.request('POST', `/containers/${survivor}/exec`, { args: ['ps'] });
    t.match(exec.body.stdout, /sleep 999999/);
    const dead = await daemon.request<Container>('GET', `/containers/${dying}`);
    t.match(dead.body, { status: 'stopped', exitCode: 42 }, 'exit code recorded while runcd was down');

    // A graceful SIGTERM restart touches nothing either.
    await daemon.stop('SIGTERM');
    t.ok(existsSync(`/proc/${pid}`), 'still running after SIGTERM of the daemon');
    await daemon.start();
    t.equal((await daemon.request<Container>('GET', `/containers/${survivor}`)).body.status, 'running');

    t.equal((await daemon.request('POST', `/containers/${survivor}/kill?signal=KILL`)).status, 204);
    const stopped = await eventually(async () => {
      const state = (await daemon.request<Container>('GET', `/containers/${survivor}`)).body;
      return state.status === 'stopped' ? state : undefined;
    });
    t.equal(stopped.exitCode, 137, 'exit code of a container created by the previous daemon');
    t.equal((await daemon.request('DELETE', `/containers/${survivor}`)).status, 204);
    t.equal((await daemon.request('DELETE', `/containers/${dying}`)).status, 204);
  },
);

t.test('a second daemon on the same socket refuses to start', async (t) => {
  const sandbox = makeSandbox(t, 'twice');
  const first = new DaemonProcess(sandbox);
  t.teardown(() => first.close());
  await first.start();
  const second = spawnSync(process.execPath, first.argv(), { encoding: 'utf8', timeout: 15_000 });
  t.equal(second.status, 2);
  t.match(second.stderr, /^runcd: another daemon is already listening on .*runcd\.sock\n$/);
  t.equal((await first.request('GET', '/healthz')).status, 200, 'the first daemon is unaffected');
});
