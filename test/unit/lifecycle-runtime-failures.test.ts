import t from 'tap';
import { ConflictError, RuntimeFailureError, RuntimeRejectedError } from '../../src/errors.js';
import { parseSignal, type Signal } from '../../src/signals.js';
import { RuntimeError } from '../../src/runtime/runc.js';
import { startFakeLifecycle } from '../helpers/fake-lifecycle.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

/**
 * What the service does when runc refuses or fails, scripted on the fake runtime: the error a caller gets (from
 * runc's words, classified by runc.ts) and a store left as it was.
 */

function signal(name: string): Signal {
  const parsed = parseSignal(name);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.signal;
}

t.test(
  'runc kill fails: the caller gets runtime_failed with runc words, the container stays running',
  async (t) => {
    const lifecycle = await startFakeLifecycle();
    t.teardown(lifecycle.close);
    const { service, runtime, stored } = lifecycle;
    await service.create({ id: 'k', bundle: '/b', start: true });
    runtime.failNext('kill', 'unable to signal init: operation not permitted');
    const error = await service.kill('k', signal('SIGTERM')).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    t.type(error, RuntimeFailureError);
    t.match(error, { code: 'runtime_failed', message: /operation not permitted/ });
    t.equal(stored('k')!.status, 'running');
    t.notOk(
      lifecycle.events.some((event) => event.type === 'kill'),
      'no kill event for a signal not sent',
    );
  },
);

t.test(
  'runc says the container is not running (it died first): kill answers container_not_running',
  async (t) => {
    const lifecycle = await startFakeLifecycle();
    t.teardown(lifecycle.close);
    const { service, runtime } = lifecycle;
    await service.create({ id: 'raced', bundle: '/b', start: true });
    runtime.failNext('kill', 'container not running');
    await t.rejects(service.kill('raced', signal('SIGTERM')), { code: 'container_not_running' });
  },
);

t.test('exec hangs and the container dies under it: container_stopped, not a runtime failure', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { service, runtime } = lifecycle;
  await service.create({ id: 'e', bundle: '/b', start: true });
  runtime.hangExec();
  const exec = service.exec('e', { args: ['sleep', '1000'] });
  runtime.exit('e', 137);
  const error = await exec.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  t.type(error, ConflictError);
  t.match(error, { code: 'container_stopped' });
  t.notOk(
    lifecycle.events.some((event) => event.type === 'exec'),
    'no exec event',
  );
});

t.test('runc create fails: runtime_create_failed, and nothing of the container is left', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { service, runtime, stored } = lifecycle;
  runtime.failNext('create', 'container_linux.go:380: starting container process caused: unknown');
  await t.rejects(service.create({ id: 'bad', bundle: '/b' }), RuntimeRejectedError);
  t.equal(stored('bad'), undefined, 'no row');
  t.throws(() => service.get('bad'), { code: 'container_not_found' });
  t.notOk(
    lifecycle.events.some((event) => event.id === 'bad'),
    'no event',
  );
  await service.create({ id: 'bad', bundle: '/b' });
  t.equal(stored('bad')!.status, 'created', 'the id is free again');
});

t.test('runc start fails: the container stays created', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { service, runtime, stored } = lifecycle;
  await service.create({ id: 's', bundle: '/b' });
  runtime.failNext('start', 'cannot start a container that has stopped');
  await t.rejects(service.start('s'), { code: 'container_stopped' });
  t.equal(stored('s')!.status, 'created');
  await service.start('s');
  t.equal(stored('s')!.status, 'running', 'a second start works');
});

t.test('a policy restart whose create fails leaves the container stopped with its last exit', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { service, runtime, stored, clock } = lifecycle;
  await service.create({ id: 'p', bundle: '/b', start: true, restartPolicy: { name: 'always' } });
  const died = lifecycle.nextEvent('die', 'p');
  runtime.exit('p', 5);
  await died;
  runtime.failNext('create', 'container_linux.go:380: starting container process caused: unknown');
  clock.advance(100);
  while (runtime.commands('create', 'p').length < 2) await new Promise((resolve) => setImmediate(resolve));
  await service.waitFor('p', 'stopped').result;
  t.match(stored('p'), { status: 'stopped', exitCode: 5, restartCount: 1, intent: null });
});

t.test('the fake refuses what runc refuses, with the kinds runc.ts gives runc words', async (t) => {
  const runtime = new FakeRuntime();
  t.teardown(() => runtime.cleanup());
  const kindOf = (promise: Promise<unknown>) =>
    promise.then(
      () => 'accepted',
      (error: unknown) => (error instanceof RuntimeError ? error.kind : String(error)),
    );
  t.equal(await kindOf(runtime.runc.state('nope')), 'not_found');
  await runtime.conmon.create('r');
  t.equal(await kindOf(runtime.runc.resume('r')), 'paused', 'resume of a created container: "not paused"');
  await runtime.runc.start('r');
  t.equal(await kindOf(runtime.runc.start('r')), 'already_running');
  t.equal(await kindOf(runtime.runc.delete('r')), 'not_stopped', 'delete of a running one needs --force');
  await runtime.runc.pause('r');
  t.equal(await kindOf(runtime.runc.start('r')), 'paused');
  t.equal(
    await kindOf(
      runtime.runc.exec(
        'r',
        { args: ['true'], cwd: '/', user: { uid: 0, gid: 0 } },
        { outputLimitBytes: 1024 },
      ),
    ),
    'paused',
  );
  await runtime.runc.resume('r');
  runtime.exit('r', 0);
  t.equal(await kindOf(runtime.runc.start('r')), 'stopped');
  t.equal(await kindOf(runtime.runc.kill('r', 15)), 'not_running');
  t.equal(
    await kindOf(
      runtime.runc.exec(
        'r',
        { args: ['true'], cwd: '/', user: { uid: 0, gid: 0 } },
        { outputLimitBytes: 1024 },
      ),
    ),
    'stopped',
  );
  t.equal(await runtime.conmon.readExit('r').then((exit) => exit?.exitCode), 0, 'conmon recorded the exit');
  t.equal(await kindOf(runtime.runc.delete('r')), 'accepted', 'a stopped one is deleted without --force');
});
