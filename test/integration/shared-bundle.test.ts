import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Container, ExecResult } from '../../src/schemas/container.js';
import { client, makeSandbox, startInProcess } from '../helpers/sandbox.js';

t.test("containers sharing a bundle: conmon's FIFOs and sockets stay out of it", async (t) => {
  const sandbox = makeSandbox(t, 'shared');
  const bundle = sandbox.bundle('b');
  const api = client(await startInProcess(t, sandbox));
  const ids = ['a', 'b', 'c', 'd'].map((name) => sandbox.id(name));
  const created = await Promise.all(
    ids.map((id) => api.post<Container>('/containers', { id, bundle, start: true })),
  );
  t.same(
    created.map((result) => result.body.status),
    ids.map(() => 'running'),
  );
  // conmon creates its attach socket and ctl/winsz FIFOs in the bundle it is given, unlinking what is there.
  t.same(
    readdirSync(bundle).sort(),
    ['config.json', 'rootfs'],
    "nothing was written into the caller's bundle",
  );
  t.equal(created[0]?.body.bundle, bundle, "the container still names the caller's bundle");
  for (const id of ids) t.equal((await api.delete(`/containers/${id}?force=true`)).status, 204);
});

t.test("a relative bind mount in config.json resolves against the caller's bundle", async (t) => {
  const sandbox = makeSandbox(t, 'relbind');
  const bundle = sandbox.bundle('b', ['sleep', '999999'], (spec) => {
    (spec.mounts as unknown[]).push({
      destination: '/data',
      type: 'bind',
      source: 'data',
      options: ['rbind', 'ro'],
    });
  });
  mkdirSync(join(bundle, 'data'));
  writeFileSync(join(bundle, 'data', 'hello'), 'hello from the bundle\n');
  const api = client(await startInProcess(t, sandbox));
  const id = sandbox.id('c');
  t.equal((await api.post<Container>('/containers', { id, bundle, start: true })).status, 201);
  const cat = await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['cat', '/data/hello'] });
  t.match(cat.body, { exitCode: 0, stdout: 'hello from the bundle\n' });
  t.equal((await api.delete(`/containers/${id}?force=true`)).status, 204);
});
