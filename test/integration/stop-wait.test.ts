import t from 'tap';
import { request } from 'undici';
import { Agent } from 'undici';
import type { Container, WaitResult } from '../../src/schemas/container.js';
import { client, DaemonProcess, makeSandbox, startInProcess } from '../helpers/sandbox.js';

const TRAPS_TERM = ['sh', '-c', 'trap "exit 0" TERM INT; while true; do sleep 0.1; done'];

t.test('stop', async (t) => {
  const sandbox = makeSandbox(t, 'stop');
  const api = client(await startInProcess(t, sandbox));
  const sleeper = sandbox.bundle('sleeper');
  const trapper = sandbox.bundle('trapper', TRAPS_TERM);

  t.test('a PID 1 that ignores SIGTERM ends by SIGKILL after the timeout', async (t) => {
    const id = sandbox.id('ignores');
    await api.post('/containers', { id, bundle: sleeper, start: true });
    const started = Date.now();
    const stopped = await api.post<Container>(`/containers/${id}/stop?timeout=1`);
    t.equal(stopped.status, 200);
    t.match(stopped.body, { status: 'stopped', exitCode: 137, pid: 0 });
    t.ok(Date.now() - started >= 1000, 'waited for the timeout before SIGKILL');
    const again = await api.post<Container>(`/containers/${id}/stop`);
    t.equal(again.status, 200, 'stopping a stopped container is not an error');
    t.equal(again.body.exitCode, 137);
    await api.delete(`/containers/${id}`);
  });

  t.test('a shell that traps TERM exits 0, well before the timeout', async (t) => {
    const id = sandbox.id('traps');
    await api.post('/containers', { id, bundle: trapper, start: true });
    const started = Date.now();
    const stopped = await api.post<Container>(`/containers/${id}/stop?timeout=30`);
    t.match(stopped.body, { status: 'stopped', exitCode: 0 });
    t.ok(Date.now() - started < 30_000, 'did not wait for the timeout');
    await api.delete(`/containers/${id}`);
  });

  t.test('timeout=-1 never escalates; a custom signal and per-container defaults are honoured', async (t) => {
    const id = sandbox.id('defaults');
    const created = await api.post<Container>('/containers', {
      id,
      bundle: sleeper,
      start: true,
      stopSignal: 'SIGKILL',
      stopTimeout: 0,
    });
    t.match(created.body, { stopSignal: 'SIGKILL', stopTimeout: 0 });
    t.match((await api.post<Container>(`/containers/${id}/stop`)).body, { exitCode: 137 });
    await api.delete(`/containers/${id}`);

    const patient = sandbox.id('patient');
    await api.post('/containers', { id: patient, bundle: trapper, start: true });
    t.match((await api.post<Container>(`/containers/${patient}/stop?timeout=-1&signal=TERM`)).body, {
      status: 'stopped',
    });
    await api.delete(`/containers/${patient}`);
  });

  t.test('stop answers 404 for unknown ids and 400 for bad parameters', async (t) => {
    t.equal((await api.post(`/containers/${sandbox.id('nope')}/stop`)).status, 404);
    t.equal((await api.post(`/containers/${sandbox.id('nope')}/stop?timeout=abc`)).status, 400);
    t.equal((await api.post(`/containers/${sandbox.id('nope')}/stop?signal=KILLX`)).status, 400);
  });
});

t.test('wait', async (t) => {
  const sandbox = makeSandbox(t, 'wait');
  const api = client(await startInProcess(t, sandbox));
  const quick = sandbox.bundle('quick', ['sh', '-c', 'exit 3']);
  const sleeper = sandbox.bundle('sleeper');

  t.test('a wait registered before start sees a process that exits at once', async (t) => {
    const id = sandbox.id('racer');
    await api.post('/containers', { id, bundle: quick });
    const waiting = api.post<WaitResult>(`/containers/${id}/wait`);
    await api.post(`/containers/${id}/start`);
    const result = await waiting;
    t.equal(result.status, 200);
    t.match(result.body, { exitCode: 3, oomKilled: false, timedOut: false });
    t.ok(result.body.finishedAt);
  });

  t.test('after the exit, wait answers at once', async (t) => {
    const id = sandbox.id('racer');
    t.match((await api.post<WaitResult>(`/containers/${id}/wait`)).body, { exitCode: 3 });
  });

  t.test(
    'condition=removed answers when the container is deleted, and the exit code outlives it',
    async (t) => {
      const id = sandbox.id('racer');
      const removed = api.post<WaitResult>(`/containers/${id}/wait?condition=removed`);
      await api.delete(`/containers/${id}`);
      t.match((await removed).body, { exitCode: 3 });
      t.equal((await api.get(`/containers/${id}`)).status, 404, 'gone from the API');
      t.match(
        (await api.post<WaitResult>(`/containers/${id}/wait`)).body,
        { exitCode: 3 },
        'wait still knows',
      );
    },
  );

  t.test('a wait with a timeout answers timedOut', async (t) => {
    const id = sandbox.id('long');
    await api.post('/containers', { id, bundle: sleeper, start: true });
    t.match((await api.post<WaitResult>(`/containers/${id}/wait?timeout=0.3`)).body, {
      timedOut: true,
      exitCode: null,
    });
    await api.delete(`/containers/${id}?force=true`);
  });

  t.test('wait on an unknown id is a 404', async (t) => {
    t.equal((await api.post(`/containers/${sandbox.id('never')}/wait`)).status, 404);
    t.equal((await api.post(`/containers/${sandbox.id('never')}/wait?condition=sideways`)).status, 400);
  });
});

t.test('wait sends its headers before the container exits (real socket)', async (t) => {
  const sandbox = makeSandbox(t, 'waith');
  const daemon = new DaemonProcess(sandbox);
  t.teardown(() => daemon.close());
  await daemon.start();
  const id = sandbox.id('c');
  await daemon.request('POST', '/containers', { id, bundle: sandbox.bundle('b'), start: true });
  const agent = new Agent({ connect: { socketPath: sandbox.socket } });
  t.teardown(() => agent.close());
  const response = await request(`http://localhost/containers/${id}/wait`, {
    method: 'POST',
    dispatcher: agent,
  });
  t.equal(response.statusCode, 200, 'headers arrived while the container still runs');
  t.equal((await daemon.request<Container>('GET', `/containers/${id}`)).body.status, 'running');
  await daemon.request('POST', `/containers/${id}/kill?signal=KILL`);
  t.match(JSON.parse(await response.body.text()), { exitCode: 137 });
  await daemon.request('DELETE', `/containers/${id}`);
});
