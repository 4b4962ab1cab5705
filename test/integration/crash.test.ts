import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Container } from '../../src/schemas/container.js';
import type { ContainerEvent } from '../../src/schemas/events.js';
import { conmonAlive, countByType, eventsOf, runcStatus } from '../helpers/crash-checks.js';
import { RuntimeWrapper, type RuntimeCommand } from '../helpers/runtime-wrapper.js';
import { DaemonProcess, eventually, makeSandbox, type Sandbox } from '../helpers/sandbox.js';

/**
 * SIGKILL of runcd inside each runc command of each operation (issue 13). A runtime wrapper holds the chosen runc
 * command, so "runcd is in the middle of it" is a state, not a guess; runcd is killed there, the command is let
 * go (it finishes without runcd, as it would after a real crash), runcd starts again, and runc, conmon, the store
 * and the events must agree, with the exit codes that conmon recorded.
 */

interface World {
  sandbox: Sandbox;
  wrapper: RuntimeWrapper;
  daemon: DaemonProcess;
  since: string;
  bundle: string;
  trapping: string;
}

async function world(t: Test): Promise<World> {
  const sandbox = makeSandbox(t, 'crash');
  const wrapper = new RuntimeWrapper(sandbox.dir);
  const daemon = new DaemonProcess(sandbox, ['--runtime', wrapper.path]);
  // Teardown runs in reverse: the daemon goes first, then nothing may stay held (the sandbox removes the rest).
  t.teardown(() => wrapper.releaseAll());
  t.teardown(() => daemon.close());
  await daemon.start();
  return {
    sandbox,
    wrapper,
    daemon,
    since: new Date(Date.now() - 1000).toISOString(),
    bundle: sandbox.bundle('sleeper'),
    // Exits 3 on SIGTERM (a plain sleep as PID 1 would ignore it).
    trapping: sandbox.bundle('trapper', ['sh', '-c', 'trap "exit 3" TERM; while true; do sleep 0.1; done']),
  };
}

/** Runs `operation` until runcd is inside `command`, SIGKILLs runcd there, lets the command finish, restarts. */
async function crashInside(
  w: World,
  command: RuntimeCommand,
  operation: () => Promise<unknown>,
): Promise<void> {
  w.wrapper.arm(command);
  const answer = operation().then(
    (response) => response,
    (error: unknown) => error,
  );
  await w.wrapper.held(command);
  await w.daemon.stop('SIGKILL');
  await answer;
  await w.wrapper.finish(command);
  await w.daemon.start();
}

async function container(w: World, id: string): Promise<Container | undefined> {
  const response = await w.daemon.request<Container>('GET', `/containers/${id}`);
  return response.status === 200 ? response.body : undefined;
}

async function stoppedState(w: World, id: string): Promise<Container> {
  return eventually(async () => {
    const state = await container(w, id);
    return state?.status === 'stopped' ? state : undefined;
  }, 20_000);
}

/** runc and conmon agree with what runcd says about a live container. */
async function agreesLive(t: Test, w: World, id: string, status: 'created' | 'running'): Promise<void> {
  const state = await container(w, id);
  t.equal(state?.status, status, `runcd says ${status}`);
  t.equal(state?.monitor, 'ok', 'its monitor is there');
  t.equal(runcStatus(w.sandbox.runtimeRoot, id), status, `runc says ${status}`);
  t.ok(conmonAlive(w.sandbox.stateDir, id), 'conmon is alive');
}

/** A SIGKILL through runcd ends in exit code 137 recorded by conmon, with one more `die`. */
async function killRecords137(t: Test, w: World, id: string, diesBefore: number): Promise<void> {
  t.equal((await w.daemon.request('POST', `/containers/${id}/kill?signal=KILL`)).status, 204);
  const stopped = await stoppedState(w, id);
  t.equal(stopped.exitCode, 137, 'the exit code conmon recorded');
  const dies = (await eventsOf(w.daemon, w.since, [id])).filter((event) => event.type === 'die');
  t.equal(dies.length, diesBefore + 1, 'one die event per exit');
  t.equal(dies.at(-1)?.attributes.exitCode, 137);
}

/** What the process's descriptors point at. */
function descriptorsOf(pid: number | undefined): string[] {
  try {
    return readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
  } catch {
    return [];
  }
}

function reconciled(events: ContainerEvent[], type: string): ContainerEvent[] {
  return events.filter((event) => event.type === type && event.attributes.reconciled === true);
}

t.test('SIGKILL of runcd inside each phase of each operation', async (t) => {
  const w = await world(t);
  const { daemon, sandbox } = w;
  const createRunning = async (name: string, bundle = w.bundle): Promise<string> => {
    const id = sandbox.id(name);
    t.equal((await daemon.request('POST', '/containers', { id, bundle, start: true })).status, 201);
    return id;
  };

  await t.test('inside runc create (run by conmon): the container keeps its monitor', async (t) => {
    const id = sandbox.id('create');
    await crashInside(w, 'create', () => daemon.request('POST', '/containers', { id, bundle: w.bundle }));
    await agreesLive(t, w, id, 'created');
    const events = await eventsOf(daemon, w.since, [id]);
    t.same(countByType(events), { create: 1 }, 'the create event, once');
    t.equal(reconciled(events, 'create').length, 1, 'marked as reconciled');
    t.equal((await daemon.request('POST', `/containers/${id}/start`)).status, 200);
    await killRecords137(t, w, id, 0);
  });

  await t.test(
    'inside runc create, still held when runcd starts again: reconcile waits for it',
    async (t) => {
      const id = sandbox.id('create-late');
      w.wrapper.arm('create');
      const answer = daemon.request('POST', '/containers', { id, bundle: w.bundle }).catch((error) => error);
      await w.wrapper.held('create');
      await daemon.stop('SIGKILL');
      await answer;
      const starting = daemon.start();
      // Released only once the new runcd reads the sync FIFO: the report reaches a reader that waits for it.
      const fifo = join(sandbox.stateDir, 'containers', id, 'sync.fifo');
      await eventually(async () => (descriptorsOf(daemon.pid()).includes(fifo) ? true : undefined), 60_000);
      await w.wrapper.finish('create');
      await starting;
      await agreesLive(t, w, id, 'created');
      t.same(countByType(await eventsOf(daemon, w.since, [id])), { create: 1 });
      t.equal((await daemon.request('POST', `/containers/${id}/start`)).status, 200);
      await killRecords137(t, w, id, 0);
    },
  );

  await t.test('inside runc create of a run (start: true)', async (t) => {
    const id = sandbox.id('run');
    await crashInside(w, 'create', () =>
      daemon.request('POST', '/containers', { id, bundle: w.bundle, start: true }),
    );
    // The caller had no answer; the create is finished, the start was never asked of runc.
    await agreesLive(t, w, id, 'created');
    t.same(countByType(await eventsOf(daemon, w.since, [id])), { create: 1 });
    t.equal((await daemon.request('POST', `/containers/${id}/start`)).status, 200);
    await killRecords137(t, w, id, 0);
  });

  await t.test('inside runc start', async (t) => {
    const id = sandbox.id('start');
    t.equal((await daemon.request('POST', '/containers', { id, bundle: w.bundle })).status, 201);
    await crashInside(w, 'start', () => daemon.request('POST', `/containers/${id}/start`));
    await agreesLive(t, w, id, 'running');
    const events = await eventsOf(daemon, w.since, [id]);
    t.same(countByType(events), { create: 1, start: 1 });
    t.equal(reconciled(events, 'start').length, 1, 'the start found at startup is published, reconciled');
    await killRecords137(t, w, id, 0);
  });

  await t.test('inside runc exec', async (t) => {
    const id = await createRunning('exec');
    await crashInside(w, 'exec', () => daemon.request('POST', `/containers/${id}/exec`, { args: ['true'] }));
    await agreesLive(t, w, id, 'running');
    await killRecords137(t, w, id, 0);
  });

  await t.test('inside runc kill: the exit while runcd is down is recorded once', async (t) => {
    const id = await createRunning('kill');
    await crashInside(w, 'kill', () => daemon.request('POST', `/containers/${id}/kill?signal=KILL`));
    const stopped = await stoppedState(w, id);
    t.equal(stopped.exitCode, 137);
    t.equal(runcStatus(sandbox.runtimeRoot, id), 'stopped');
    await eventually(async () => (conmonAlive(sandbox.stateDir, id) ? undefined : true), 20_000);
    t.same(countByType(await eventsOf(daemon, w.since, [id])), { create: 1, start: 1, die: 1 });
  });

  await t.test('inside the stop signal', async (t) => {
    const id = await createRunning('stop', w.trapping);
    await crashInside(w, 'kill', () => daemon.request('POST', `/containers/${id}/stop?timeout=30`));
    const stopped = await stoppedState(w, id);
    t.equal(stopped.exitCode, 3, 'the exit of the signal runc delivered');
    t.equal(runcStatus(sandbox.runtimeRoot, id), 'stopped');
    const counts = countByType(await eventsOf(daemon, w.since, [id]));
    t.equal(counts.die, 1, 'one die');
  });

  await t.test('inside runc delete: no phantom row, the delete event once', async (t) => {
    const id = await createRunning('delete');
    await killRecords137(t, w, id, 0);
    await crashInside(w, 'delete', () => daemon.request('DELETE', `/containers/${id}`));
    t.equal((await daemon.request('GET', `/containers/${id}`)).status, 404, 'the row is gone');
    t.equal(runcStatus(sandbox.runtimeRoot, id), undefined, 'runc has nothing');
    const events = await eventsOf(daemon, w.since, [id]);
    t.same(countByType(events), { create: 1, start: 1, kill: 1, die: 1, delete: 1 });
    t.equal(reconciled(events, 'delete').length, 1);
    const waited = await daemon.request('POST', `/containers/${id}/wait`);
    t.match(waited.body, { exitCode: 137 }, 'the tombstone keeps the exit code');
  });

  await t.test('inside runc delete --force of a running container', async (t) => {
    const id = await createRunning('force');
    await crashInside(w, 'delete', () => daemon.request('DELETE', `/containers/${id}?force=true`));
    t.equal((await daemon.request('GET', `/containers/${id}`)).status, 404);
    t.equal(runcStatus(sandbox.runtimeRoot, id), undefined);
    t.notOk(conmonAlive(sandbox.stateDir, id), 'no monitor left');
    const events = await eventsOf(daemon, w.since, [id]);
    t.same(countByType(events), { create: 1, start: 1, die: 1, delete: 1 });
    t.equal(events.find((event) => event.type === 'die')?.attributes.exitCode, 137);
  });

  for (const command of ['create', 'start'] as const) {
    await t.test(`inside the runc ${command} of a restart`, async (t) => {
      const id = await createRunning(`restart-${command}`);
      await killRecords137(t, w, id, 0);
      await crashInside(w, command, () => daemon.request('POST', `/containers/${id}/restart`));
      await agreesLive(t, w, id, 'running');
      const events = await eventsOf(daemon, w.since, [id]);
      t.equal(countByType(events).create, 1, 'a restart is not announced as a create');
      t.equal(countByType(events).restart, 1, 'the restart, once');
      t.equal(reconciled(events, 'restart').length, 1, 'finished and marked');
      await killRecords137(t, w, id, 1);
    });
  }

  await t.test('nothing of the sandbox is left behind in runc but stopped containers', async (t) => {
    const containers = (await daemon.request<Container[]>('GET', '/containers')).body;
    for (const state of containers) {
      t.equal(runcStatus(sandbox.runtimeRoot, state.id), state.status, `${state.id}: runc agrees`);
      t.equal(state.monitor, 'ok');
    }
  });
});

t.test('a container that lost its monitor is never presented as a normal one', async (t) => {
  const w = await world(t);
  const { daemon, sandbox } = w;
  const running = sandbox.id('lost-running');
  const created = sandbox.id('lost-created');
  t.equal(
    (await daemon.request('POST', '/containers', { id: running, bundle: w.bundle, start: true })).status,
    201,
  );
  t.equal((await daemon.request('POST', '/containers', { id: created, bundle: w.bundle })).status, 201);
  await daemon.stop('SIGKILL');
  // What a crash of conmon (or an OOM kill of it) leaves: the containers, without their monitors.
  for (const id of [running, created]) {
    const pid = Number(readFileSync(join(sandbox.stateDir, 'containers', id, 'conmon.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    await eventually(async () => (conmonAlive(sandbox.stateDir, id) ? undefined : true));
  }
  await daemon.start();

  for (const [id, status] of [
    [running, 'running'],
    [created, 'created'],
  ] as const) {
    t.match(
      await container(w, id),
      { status, monitor: 'lost' },
      `${status}, and said to be without its monitor`,
    );
    const events = await eventsOf(daemon, w.since, [id]);
    t.equal(events.filter((event) => event.type === 'monitor-lost').length, 1, 'one monitor-lost event');
  }
  const refused = await daemon.request('POST', `/containers/${created}/start`);
  t.match(refused, { status: 409, body: { code: 'container_monitor_lost' } }, 'start refuses it');

  // Its end is still noticed (from /proc), with an exit code nobody can know.
  t.equal((await daemon.request('POST', `/containers/${running}/kill?signal=KILL`)).status, 204);
  const stopped = await stoppedState(w, running);
  t.equal(stopped.exitCode, null, 'exit code unknown');
  t.equal(stopped.monitor, 'lost');

  // Restarting it again gives it a monitor.
  t.equal((await daemon.request('POST', `/containers/${running}/restart`)).status, 200);
  t.match(await container(w, running), { status: 'running', monitor: 'ok' });
  t.ok(conmonAlive(sandbox.stateDir, running));

  // A restart of runcd does not announce the loss twice.
  await daemon.stop('SIGKILL');
  await daemon.start();
  const events = await eventsOf(daemon, w.since, [created]);
  t.equal(events.filter((event) => event.type === 'monitor-lost').length, 1);
});
