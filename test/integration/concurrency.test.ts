import { execFileSync } from 'node:child_process';
import t from 'tap';
import type { Container } from '../../src/schemas/container.js';
import { client, makeSandbox, RUNTIME_BINARY, startInProcess } from '../helpers/sandbox.js';

function runtimeIds(runtimeRoot: string): string[] {
  const out = execFileSync(RUNTIME_BINARY, [`--root=${runtimeRoot}`, 'list', '--format', 'json']).toString();
  return ((JSON.parse(out || 'null') as Array<{ id: string }> | null) ?? []).map((entry) => entry.id);
}

t.test('two concurrent creates with the same id: one 201, one 409, one runc container', async (t) => {
  const sandbox = makeSandbox(t, 'race');
  const bundle = sandbox.bundle('b');
  const api = client(await startInProcess(t, sandbox));
  const id = sandbox.id('same');
  const results = await Promise.all([
    api.post('/containers', { id, bundle }),
    api.post('/containers', { id, bundle }),
  ]);
  t.same(results.map((result) => result.status).sort(), [201, 409]);
  t.same(runtimeIds(sandbox.runtimeRoot), [id]);
  t.equal((await api.delete(`/containers/${id}?force=true`)).status, 204);
});

t.test('20 containers created, started and deleted in parallel leave nothing behind', async (t) => {
  const sandbox = makeSandbox(t, 'par');
  const bundle = sandbox.bundle('b');
  const api = client(await startInProcess(t, sandbox));
  const ids = Array.from({ length: 20 }, (_, index) => sandbox.id(`c${index}`));
  const created = await Promise.all(ids.map((id) => api.post<Container>('/containers', { id, bundle })));
  t.same(
    created.map((result) => result.status),
    ids.map(() => 201),
  );
  const started = await Promise.all(ids.map((id) => api.post<Container>(`/containers/${id}/start`)));
  t.ok(
    started.every((result) => result.body.status === 'running'),
    'all running',
  );
  t.equal(new Set(started.map((result) => result.body.pid)).size, 20, '20 distinct init pids');
  t.equal((await api.get<Container[]>('/containers?status=running')).body.length, 20);
  const deleted = await Promise.all(ids.map((id) => api.delete(`/containers/${id}?force=true`)));
  t.same(
    deleted.map((result) => result.status),
    ids.map(() => 204),
  );
  t.same((await api.get<Container[]>('/containers')).body, []);
  t.same(runtimeIds(sandbox.runtimeRoot), [], 'no runc container left');
  const monitors = execFileSync('ps', ['-eo', 'stat=,args=']).toString().split('\n');
  t.notOk(
    monitors.some((line) => line.includes(sandbox.dir) && !line.startsWith('Z')),
    'no live conmon of this test left',
  );
});
