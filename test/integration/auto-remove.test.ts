import t from 'tap';
import type { Container } from '../../src/schemas/container.js';
import { client, DaemonProcess, eventually, makeSandbox, startInProcess } from '../helpers/sandbox.js';

const typesOf = (ndjson: string, id: string) =>
  ndjson
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as { type: string; id: string })
    .filter((event) => event.id === id)
    .map((event) => event.type);

t.test('an autoRemove container is deleted, with its delete event, once it stops', async (t) => {
  const sandbox = makeSandbox(t, 'arm');
  const daemon = await startInProcess(t, sandbox);
  const api = client(daemon);
  const bundle = sandbox.bundle('b');
  const since = new Date().toISOString();

  const plain = sandbox.id('plain');
  const created = await api.post<Container>('/containers', { id: plain, bundle });
  t.equal(created.body.autoRemove, false, 'off by default, and shown');

  const id = sandbox.id('rm');
  const started = await api.post<Container>('/containers', { id, bundle, start: true, autoRemove: true });
  t.equal(started.status, 201);
  t.equal(started.body.autoRemove, true);
  t.equal((await api.get<Container>(`/containers/${id}`)).body.autoRemove, true, 'GET shows it');

  const removed = daemon.app.inject({ method: 'POST', url: `/containers/${id}/wait?condition=removed` });
  t.equal((await api.post(`/containers/${id}/kill?signal=KILL`)).status, 204);
  t.equal((await removed).statusCode, 200, 'wait for removal answers');
  t.equal((await api.get(`/containers/${id}`)).status, 404, 'gone');

  const until = new Date().toISOString();
  const events = await daemon.app.inject({
    method: 'GET',
    url: `/events?since=${since}&until=${until}&id=${id}`,
  });
  t.same(typesOf(events.body, id), ['create', 'start', 'kill', 'die', 'delete']);
  t.equal((await api.delete(`/containers/${plain}`)).status, 204);
});

t.test('a caller restart of an autoRemove container keeps it', async (t) => {
  const sandbox = makeSandbox(t, 'arr');
  const daemon = await startInProcess(t, sandbox);
  const api = client(daemon);
  const id = sandbox.id('rm');
  await api.post('/containers', { id, bundle: sandbox.bundle('b'), start: true, autoRemove: true });
  const restarted = await api.post<Container>(`/containers/${id}/restart?timeout=0`);
  t.equal(restarted.status, 200);
  t.equal(restarted.body.status, 'running');
  t.equal((await api.get<Container>(`/containers/${id}`)).body.status, 'running', 'still there');
  t.equal((await api.delete(`/containers/${id}?force=true`)).status, 204);
});

t.test(
  'auto-removal survives a SIGKILL of the daemon: the restarted one removes the container',
  async (t) => {
    const sandbox = makeSandbox(t, 'ard');
    const daemon = new DaemonProcess(sandbox);
    t.teardown(() => daemon.close());
    await daemon.start();
    const id = sandbox.id('rm');
    const created = await daemon.request<Container>('POST', '/containers', {
      id,
      bundle: sandbox.bundle('b'),
      start: true,
      autoRemove: true,
    });
    t.equal(created.status, 201);
    const since = created.body.created;

    await daemon.stop('SIGKILL');
    // The container dies while no runcd runs: only the store remembers that it is to be removed.
    process.kill(created.body.pid, 'SIGKILL');
    await eventually(async () => {
      try {
        process.kill(created.body.pid, 0);
        return undefined;
      } catch {
        return true;
      }
    });

    await daemon.start();
    await eventually(async () =>
      (await daemon.request('GET', `/containers/${id}`)).status === 404 ? true : undefined,
    );
    const until = new Date().toISOString();
    const events = await daemon.requestText('GET', `/events?since=${since}&until=${until}&id=${id}`);
    t.same(typesOf(events, id).slice(-2), ['die', 'delete'], 'its die and delete are published once');
  },
);
