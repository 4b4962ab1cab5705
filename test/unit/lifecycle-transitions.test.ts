import { setImmediate as nextTick } from 'node:timers/promises';
import t from 'tap';
import { parseSignal, type Signal } from '../../src/signals.js';
import { startFakeLifecycle } from '../helpers/fake-lifecycle.js';

/**
 * Every transition of the state machine made through ContainerService's public API against the fake runtime:
 * the event it publishes, and the store committing it (read back with a fresh ContainerRepository, not the
 * service's view). Then the waiter race and reconcile at startup.
 */

function signal(name: string): Signal {
  const parsed = parseSignal(name);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.signal;
}

t.test(
  'create, start, pause, resume, die, caller restart and delete: each event, each committed',
  async (t) => {
    const lifecycle = await startFakeLifecycle();
    t.teardown(lifecycle.close);
    const { service, runtime, stored } = lifecycle;
    const id = 'walk';

    await service.create({ id, bundle: '/bundles/walk' });
    t.match(
      stored(id),
      { status: 'created', pid: runtime.containers.get(id)!.pid },
      'created, with the init pid',
    );

    await service.start(id);
    t.match(stored(id), { status: 'running' }, 'running');
    t.ok(stored(id)!.startedAt, 'startedAt stored');

    await service.pause(id);
    t.equal(stored(id)!.status, 'paused', 'paused');
    t.equal(runtime.status(id), 'paused', 'runc paused it');
    await service.resume(id);
    t.equal(stored(id)!.status, 'running', 'running again');

    const died = lifecycle.nextEvent('die', id);
    runtime.exit(id, 7);
    t.match((await died).attributes, { exitCode: 7, oomKilled: false }, 'die carries the exit code');
    t.match(stored(id), { status: 'stopped', exitCode: 7, pid: 0 }, 'stopped with its exit code');

    const restarted = await service.restart(id);
    t.equal(restarted.status, 'running', 'a caller restart answers the running container');
    t.match(
      stored(id),
      { status: 'running', exitCode: null, restartCount: 0, intent: null },
      'restart committed',
    );

    await service.delete(id, { force: true });
    t.equal(stored(id), undefined, 'the row is gone');
    t.equal(runtime.status(id), undefined, 'runc has no container');

    t.same(
      lifecycle.events.filter((event) => event.id === id).map((event) => event.type),
      ['create', 'start', 'pause', 'resume', 'die', 'restart', 'die', 'delete'],
      'one event per transition, in order (delete --force records the death it caused)',
    );
    t.match(lifecycle.events.find((event) => event.type === 'restart')?.attributes, { reason: 'caller' });
  },
);

t.test('stop: the stop signal, then the death; a container ignoring it is killed', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { service, runtime, stored } = lifecycle;
  await service.create({ id: 'polite', bundle: '/b', start: true });
  await service.stop('polite', { timeoutSeconds: 5 });
  t.match(stored('polite'), { status: 'stopped', exitCode: 143 }, 'SIGTERM ended it');
  t.same(
    runtime.commands('kill', 'polite').map((call) => call.detail),
    [15],
  );

  await service.create({ id: 'stubborn', bundle: '/b', start: true });
  runtime.ignore('stubborn', 15);
  // A 0 s grace period: the escalation to SIGKILL is immediate, no wall-clock wait.
  await service.stop('stubborn', { timeoutSeconds: 0 });
  t.match(stored('stubborn'), { status: 'stopped', exitCode: 137 }, 'SIGKILL ended it');
  t.match(lifecycle.events.filter((event) => event.type === 'stop').at(-1)?.attributes, { escalated: true });
});

t.test('kill of a paused container resumes it so the signal is delivered', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { service, stored } = lifecycle;
  await service.create({ id: 'frozen', bundle: '/b', start: true });
  await service.pause('frozen');
  await service.kill('frozen', signal('SIGKILL'));
  t.match(stored('frozen'), { status: 'stopped', exitCode: 137 });
  t.same(
    lifecycle.events.map((event) => event.type),
    ['create', 'start', 'pause', 'kill', 'die'],
    'no resume event: the kill, then its death',
  );
});

t.test('delete of a created container needs no force: runc delete kills it', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { service, runtime, stored } = lifecycle;
  await service.create({ id: 'fresh', bundle: '/b' });
  await service.delete('fresh', { force: false });
  t.equal(stored('fresh'), undefined);
  t.same(
    runtime.commands('delete', 'fresh').map((call) => call.detail),
    [{ force: false }],
  );
});

t.test(
  'autoRemove: a container that stops with no restart to follow is deleted, and it is stored',
  async (t) => {
    const lifecycle = await startFakeLifecycle();
    t.teardown(lifecycle.close);
    const { service, runtime, stored } = lifecycle;
    await service.create({ id: 'rm', bundle: '/b', start: true, autoRemove: true });
    t.equal(stored('rm')!.autoRemove, true, 'autoRemove is persisted');
    const deleted = lifecycle.nextEvent('delete', 'rm');
    runtime.exit('rm', 0);
    await deleted;
    t.equal(stored('rm'), undefined, 'removed from the store');
    const wait = await service.waitFor('rm', 'stopped').result;
    t.equal(wait.exitCode, 0, 'wait after the removal answers from the tombstone');
  },
);

t.test('the waiter race: an exit right after, or right before, the waiter is registered', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { service, runtime } = lifecycle;
  const settled = (promise: Promise<{ exitCode: number | null }>) => {
    const seen: Array<number | null> = [];
    void promise.then((result) => seen.push(result.exitCode));
    return seen;
  };

  await service.create({ id: 'after', bundle: '/b', start: true });
  const stoppedAfter = service.waitFor('after', 'stopped');
  const removedAfter = service.waitFor('after', 'removed');
  const seenStopped = settled(stoppedAfter.result);
  const seenRemoved = settled(removedAfter.result);
  runtime.exit('after', 41);
  t.equal((await stoppedAfter.result).exitCode, 41, 'wait for stopped: the exit right after registering');
  await service.delete('after', { force: false });
  t.equal((await removedAfter.result).exitCode, 41, 'wait for removed: the same exit code');

  // Right before: conmon has written the exit file, the watcher has not reported it yet (the view says running).
  await service.create({ id: 'before', bundle: '/b', start: true });
  runtime.exit('before', 42);
  t.equal(service.get('before').status, 'running', 'the exit is not yet seen by the service');
  const stoppedBefore = service.waitFor('before', 'stopped');
  const removedBefore = service.waitFor('before', 'removed');
  t.equal((await stoppedBefore.result).exitCode, 42, 'wait for stopped: the exit right before registering');
  await service.delete('before', { force: false });
  t.equal((await removedBefore.result).exitCode, 42, 'wait for removed: the same exit code');

  for (let i = 0; i < 5; i++) await nextTick();
  t.same(seenStopped, [41], 'the stopped waiter answered exactly once');
  t.same(seenRemoved, [41], 'the removed waiter answered exactly once');
  for (const id of ['after', 'before']) {
    t.equal(
      lifecycle.events.filter((event) => event.id === id && event.type === 'die').length,
      1,
      `${id}: one die event`,
    );
  }
});

t.test('reconcile at startup against the runtime', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { runtime, stored } = lifecycle;
  let service = lifecycle.service;
  await service.create({ id: 'exited', bundle: '/b', start: true });
  await service.create({ id: 'vanished', bundle: '/b', start: true });
  await service.create({ id: 'alive', bundle: '/b', start: true });
  runtime.interruptCreate();
  void service.create({ id: 'interrupted', bundle: '/b' });
  runtime.interruptCreate();
  void service.create({ id: 'never', bundle: '/b' });
  while (service.list().length < 5) await nextTick();
  t.equal(stored('interrupted')!.status, 'creating', 'the store says creating');

  // runcd is down: one container exits, one disappears from runc, a create never reached runc.
  service.close();
  runtime.exit('exited', 12);
  runtime.forget('vanished');
  runtime.forget('never');
  const before = lifecycle.events.length;
  service = await lifecycle.restartDaemon();

  t.match(
    stored('exited'),
    { status: 'stopped', exitCode: 12 },
    'running in the store, stopped in the runtime',
  );
  t.match(stored('vanished'), { status: 'stopped', exitCode: null }, 'gone from the runtime: stopped');
  t.match(stored('alive'), { status: 'running' }, 'still running');
  t.match(stored('interrupted'), { status: 'created', pid: runtime.containers.get('interrupted')!.pid });
  t.equal(stored('never'), undefined, 'a create that never reached runc is undone');
  const found = lifecycle.events.slice(before);
  t.same(
    found.map((event) => `${event.type} ${event.id} ${String(event.attributes.reconciled)}`).sort(),
    ['create interrupted true', 'die exited true', 'die vanished true'],
    'each transition found publishes its event once, marked reconciled',
  );
  const exited = await service.waitFor('exited', 'stopped').result;
  t.equal(exited.exitCode, 12, 'wait answers the exit that happened while runcd was down');
});

t.test(
  'reconcile adopts a runc container without a row; refresh finds a pause made from outside',
  async (t) => {
    const lifecycle = await startFakeLifecycle();
    t.teardown(lifecycle.close);
    const { runtime, stored } = lifecycle;
    // Made with runc directly while runcd is down (same root): no row, no create event.
    lifecycle.service.close();
    await runtime.conmon.create('stray');
    await runtime.runc.start('stray');
    await runtime.conmon.create('outside');
    const service = await lifecycle.restartDaemon();
    t.match(stored('stray'), { status: 'running', restartPolicy: { name: 'no' } }, 'adopted as running');
    t.match(stored('outside'), { status: 'created' }, 'adopted as created');

    await runtime.runc.pause('outside');
    t.equal((await service.refresh('outside')).status, 'paused', '?refresh=true asks runc');
    t.equal(stored('outside')!.status, 'paused', 'and commits what it found');
  },
);

t.test(
  'autoRemove survives a daemon restart: a container that stopped while runcd was down is removed',
  async (t) => {
    const lifecycle = await startFakeLifecycle();
    t.teardown(lifecycle.close);
    const { runtime, stored } = lifecycle;
    await lifecycle.service.create({ id: 'rm-later', bundle: '/b', start: true, autoRemove: true });
    lifecycle.service.close();
    runtime.exit('rm-later', 0);
    const service = await lifecycle.restartDaemon();
    const removed = service.waitFor('rm-later', 'removed');
    t.equal((await removed.result).exitCode, 0, 'removed, its exit kept for wait');
    t.equal(stored('rm-later'), undefined);
    t.equal(runtime.status('rm-later'), undefined, 'runc deleted it');
  },
);
