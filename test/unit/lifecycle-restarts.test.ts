import { setImmediate as nextTick } from 'node:timers/promises';
import t from 'tap';
import { CALLER_KILL_WINDOW_MS } from '../../src/lifecycle/restart-policy.js';
import { parseSignal, type Signal } from '../../src/signals.js';
import { startFakeLifecycle, type FakeLifecycle } from '../helpers/fake-lifecycle.js';

/**
 * The restart policy over the fake runtime with the fake clock: backoff delays are read and stepped through,
 * never waited for.
 */

function signal(name: string): Signal {
  const parsed = parseSignal(name);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.signal;
}

/** The init exits with `code`; resolves once the service has handled the death (die published). */
async function dies(lifecycle: FakeLifecycle, id: string, code: number): Promise<void> {
  const died = lifecycle.nextEvent('die', id);
  lifecycle.runtime.exit(id, code);
  await died;
  // The policy decides in the same step as the die; let its lock release.
  await nextTick();
}

/** Steps the clock by `ms` and resolves with the policy's restart it fires. */
async function restartsAfter(lifecycle: FakeLifecycle, id: string, ms: number) {
  const restarted = lifecycle.nextEvent('restart', id);
  lifecycle.clock.advance(ms);
  const event = await restarted;
  await nextTick();
  return event;
}

t.test('on-failure with maxRetries: 100 ms, then 200 ms, then no more', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { service, clock, runtime, stored } = lifecycle;
  await service.create({
    id: 'flaky',
    bundle: '/b',
    start: true,
    restartPolicy: { name: 'on-failure', maxRetries: 2 },
  });

  await dies(lifecycle, 'flaky', 1);
  t.same(clock.pendingDelays(), [100], 'the first restart waits 100 ms');
  clock.advance(99);
  await nextTick();
  t.equal(runtime.commands('create', 'flaky').length, 1, 'not restarted before its delay');
  const first = await restartsAfter(lifecycle, 'flaky', 1);
  t.match(first.attributes, { reason: 'policy', restartCount: 1 });
  t.match(stored('flaky'), { status: 'running', restartCount: 1 }, 'the restart is committed');

  await dies(lifecycle, 'flaky', 1);
  t.same(clock.pendingDelays(), [200], 'the second waits twice as long');
  await restartsAfter(lifecycle, 'flaky', 200);
  t.match(stored('flaky'), { status: 'running', restartCount: 2 });

  await dies(lifecycle, 'flaky', 1);
  t.same(clock.pendingDelays(), [], 'maxRetries reached: no restart');
  t.match(stored('flaky'), { status: 'stopped', exitCode: 1, restartCount: 2 });
});

t.test('on-failure does not restart a clean exit', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  await lifecycle.service.create({
    id: 'done',
    bundle: '/b',
    start: true,
    restartPolicy: { name: 'on-failure' },
  });
  await dies(lifecycle, 'done', 0);
  t.same(lifecycle.clock.pendingDelays(), []);
  t.equal(lifecycle.stored('done')!.status, 'stopped');
});

t.test('always: restarts a clean exit too, the backoff doubling', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  await lifecycle.service.create({
    id: 'loop',
    bundle: '/b',
    start: true,
    restartPolicy: { name: 'always' },
  });
  const delays: number[][] = [];
  for (let round = 0; round < 4; round++) {
    await dies(lifecycle, 'loop', 0);
    delays.push(lifecycle.clock.pendingDelays());
    await restartsAfter(lifecycle, 'loop', delays.at(-1)![0]!);
  }
  t.same(delays, [[100], [200], [400], [800]]);
  t.match(lifecycle.stored('loop'), { status: 'running', restartCount: 4 });
});

t.test('always: never after a caller stop, nor after a caller delete', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { service, clock, stored } = lifecycle;
  await service.create({ id: 'stopped', bundle: '/b', start: true, restartPolicy: { name: 'always' } });
  await service.stop('stopped', { timeoutSeconds: 5 });
  t.same(clock.pendingDelays(), [], 'no restart scheduled');
  clock.advance(60_000);
  await nextTick();
  t.equal(stored('stopped')!.status, 'stopped');

  // A restart already waiting for its delay is cancelled by the caller's delete.
  await service.create({ id: 'waiting', bundle: '/b', start: true, restartPolicy: { name: 'always' } });
  await dies(lifecycle, 'waiting', 1);
  t.same(clock.pendingDelays(), [100]);
  await service.delete('waiting', { force: false });
  t.same(clock.pendingDelays(), [], 'the pending restart is cancelled');
  clock.advance(60_000);
  await nextTick();
  t.equal(lifecycle.runtime.commands('create', 'waiting').length, 1, 'never created again');
});

t.test(
  'the caller-kill window: a death soon after a caller kill is not restarted, a later one is',
  async (t) => {
    const lifecycle = await startFakeLifecycle();
    t.teardown(lifecycle.close);
    const { service, clock, stored } = lifecycle;

    await service.create({ id: 'killed', bundle: '/b', start: true, restartPolicy: { name: 'always' } });
    await service.kill('killed', signal('SIGKILL'));
    t.same(clock.pendingDelays(), [], 'killed by the caller: no restart');
    t.equal(stored('killed')!.status, 'stopped');

    // SIGUSR1 is caught by the init: the death that follows within the window still counts as the caller's.
    await service.create({ id: 'within', bundle: '/b', start: true, restartPolicy: { name: 'always' } });
    await service.kill('within', signal('SIGUSR1'));
    clock.advance(CALLER_KILL_WINDOW_MS - 1);
    await dies(lifecycle, 'within', 1);
    t.same(clock.pendingDelays(), [], 'died within the window: not restarted');

    await service.create({ id: 'later', bundle: '/b', start: true, restartPolicy: { name: 'always' } });
    await service.kill('later', signal('SIGUSR1'));
    clock.advance(CALLER_KILL_WINDOW_MS);
    await dies(lifecycle, 'later', 1);
    t.same(clock.pendingDelays(), [100], 'died after the window: the policy restarts it');
    await restartsAfter(lifecycle, 'later', 100);
    t.match(stored('later'), { status: 'running', restartCount: 1 });
  },
);
