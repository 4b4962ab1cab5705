import t from 'tap';
import type { Container } from '../../src/schemas/container.js';
import { client, eventually, makeSandbox, startInProcess } from '../helpers/sandbox.js';

// GET /containers answers from bytes kept until runcd's view changes; each step below changes it in another way
// (create, start, an exit runcd only learns from conmon's exit file, a restart, delete) and the list must follow.
t.test(
  'GET /containers follows every change, filtered or not, and agrees with GET /containers/:id',
  async (t) => {
    const sandbox = makeSandbox(t, 'list');
    const bundle = sandbox.bundle('sleeper', ['sleep', '600']);
    const daemon = await startInProcess(t, sandbox);
    const api = client(daemon);
    const [a, b] = [sandbox.id('a'), sandbox.id('b')];

    const listed = async (query = '') => {
      const response = await api.get<Container[]>(`/containers${query}`);
      t.equal(response.status, 200);
      t.match(response.headers['content-type'], /^application\/json; charset=utf-8$/);
      return response.body;
    };
    const statuses = async (query = '') =>
      Object.fromEntries((await listed(query)).map((container) => [container.id, container.status]));
    // The list must be exactly what the per-id reads say, field for field.
    const agreesWithReads = async () => {
      const list = await listed();
      const reads = await Promise.all(
        list.map(async (container) => (await api.get(`/containers/${container.id}`)).body),
      );
      t.same(list, reads, 'each listed container equals its GET /containers/:id');
    };

    t.same(await listed(), [], 'empty at first');
    t.equal((await api.post('/containers', { id: a, bundle, labels: { tier: 'web' } })).status, 201);
    t.same(await statuses(), { [a]: 'created' });
    t.equal((await api.post('/containers', { id: b, bundle })).status, 201);
    t.same(await statuses(), { [a]: 'created', [b]: 'created' }, 'a second create shows');
    t.same(await statuses('?label=tier=web'), { [a]: 'created' }, 'a label filter');

    t.equal((await api.post(`/containers/${a}/start`)).status, 200);
    t.same(await statuses(), { [a]: 'running', [b]: 'created' }, 'start shows');
    t.same(await statuses('?status=running'), { [a]: 'running' }, 'a status filter follows too');
    t.same(
      await statuses('?label=tier=web'),
      { [a]: 'running' },
      'and an earlier filter is not served stale',
    );
    await agreesWithReads();

    // Killed behind runcd's back: only conmon's exit file tells.
    const { pid } = (await api.get<Container>(`/containers/${a}`)).body;
    process.kill(pid, 'SIGKILL');
    await eventually(async () => ((await statuses())[a] === 'stopped' ? true : undefined));
    const stopped = (await listed()).find((container) => container.id === a);
    t.equal(stopped?.exitCode, 137, 'the exit code is listed');
    t.equal(stopped?.pid, 0);
    await agreesWithReads();

    t.equal((await api.post(`/containers/${a}/restart`)).status, 200);
    const restarted = (await listed()).find((container) => container.id === a);
    t.equal(restarted?.status, 'running', 'a restart shows');
    t.equal(restarted?.exitCode, null);
    await agreesWithReads();

    t.equal((await api.delete(`/containers/${a}?force=true`)).status, 204);
    t.same(await statuses(), { [b]: 'created' }, 'delete shows');
    t.same(await statuses('?label=tier=web'), {}, 'in the filtered list too');
    t.equal((await api.delete(`/containers/${b}?force=true`)).status, 204);
    t.same(await listed(), []);

    const head = await daemon.app.inject({ method: 'HEAD', url: '/containers' });
    t.equal(head.statusCode, 200, 'HEAD /containers answers too');
    t.equal(head.headers['content-length'], '2');
  },
);
