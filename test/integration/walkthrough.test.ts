import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import t from 'tap';
import type { Container, ExecResult } from '../../src/schemas/container.js';
import { client, makeSandbox, RUNTIME_BINARY, startInProcess } from '../helpers/sandbox.js';

/** The seed lesson's exercises 1-6, step by step, over HTTP against real runc. */
t.test('the whole seed walkthrough over HTTP', async (t) => {
  const sandbox = makeSandbox(t, 'walk');
  const bundle = sandbox.bundle('lifecycle-bundle');
  const api = client(await startInProcess(t, sandbox));
  const id = sandbox.id('mycontainer');

  // Exercise 1: create and inspect
  const created = await api.post<Container>('/containers', { id, bundle });
  t.equal(created.status, 201);
  t.equal(created.headers.location, `/containers/${id}`);
  t.equal(created.body.status, 'created');
  t.ok(created.body.pid > 0, 'created container has its init pid');
  t.equal(created.body.bundle, bundle);
  t.equal(created.body.rootfs, `${bundle}/rootfs`);
  t.equal(created.body.exitCode, null);

  const listed = await api.get<Container[]>('/containers');
  t.equal(listed.status, 200);
  const entry = listed.body.find((container) => container.id === id);
  t.equal(entry?.status, 'created', 'list shows created');
  t.ok(existsSync(`/proc/${entry?.pid}`), 'the init process exists on the host');
  t.match(
    readFileSync(`/proc/${entry?.pid}/cmdline`, 'utf8'),
    /runc/,
    'it is still runc init, waiting for start',
  );

  const state = await api.get<Container>(`/containers/${id}`);
  t.equal(state.status, 200);
  t.match(state.body, { id, status: 'created', bundle, ociVersion: /\d/ });
  // The view answers what runc state would, without running it.
  const runcState = JSON.parse(
    execFileSync(RUNTIME_BINARY, [`--root=${sandbox.runtimeRoot}`, 'state', id]).toString(),
  ) as { pid: number; ociVersion: string; created: string };
  t.equal(state.body.pid, runcState.pid, 'pid as runc state reports it');
  t.equal(state.body.ociVersion, runcState.ociVersion, 'ociVersion as runc state reports it');
  t.ok(
    Math.abs(Date.parse(state.body.created) - Date.parse(runcState.created)) < 60_000,
    'created is when runc created it',
  );

  // Exercise 2: start
  const started = await api.post<Container>(`/containers/${id}/start`);
  t.equal(started.status, 200);
  t.equal(started.body.status, 'running');
  t.ok(started.body.startedAt, 'startedAt is set');
  t.match(readFileSync(`/proc/${started.body.pid}/status`, 'utf8'), /State:\s+S \(sleeping\)/);

  // Exercise 3: exec
  const ps = await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['/bin/ps'] });
  t.equal(ps.status, 200);
  t.equal(ps.body.exitCode, 0);
  t.match(ps.body.stdout, /^\s+1 \S+\s+sleep 999999$/m, 'sleep is PID 1');
  const ls = await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['ls', '-la', '/'] });
  t.equal(ls.body.exitCode, 0);
  t.match(ls.body.stdout, /bin/);
  t.equal((await api.get<Container>(`/containers/${id}`)).body.status, 'running', 'exec leaves init running');

  // Exercise 4: busybox sleep as PID 1 ignores SIGTERM, so the lesson's note applies: SIGKILL stops it.
  t.equal((await api.post(`/containers/${id}/kill?signal=SIGTERM`)).status, 204);
  t.equal(
    (await api.get<Container>(`/containers/${id}`)).body.status,
    'running',
    'SIGTERM is ignored by PID 1',
  );
  t.equal((await api.post(`/containers/${id}/kill?signal=SIGKILL`)).status, 204);
  const stopped = await api.get<Container>(`/containers/${id}`);
  t.match(stopped.body, { status: 'stopped', pid: 0, exitCode: 137 });
  t.ok(stopped.body.finishedAt);

  // Exercise 5: exec into stopped fails, delete, then gone
  const refused = await api.post(`/containers/${id}/exec`, { args: ['/bin/ps'] });
  t.equal(refused.status, 409);
  t.equal(refused.body.detail, 'cannot exec into a stopped container');
  t.equal((await api.delete(`/containers/${id}`)).status, 204);
  t.notOk((await api.get<Container[]>('/containers')).body.some((container) => container.id === id));
  const gone = await api.get(`/containers/${id}`);
  t.equal(gone.status, 404);
  t.equal(gone.body.detail, `container "${id}" does not exist`);
  t.equal(gone.headers['content-type'], 'application/problem+json; charset=utf-8');
});

t.test('create with start: true behaves like runc run', async (t) => {
  const sandbox = makeSandbox(t, 'run');
  const bundle = sandbox.bundle('b');
  const api = client(await startInProcess(t, sandbox));
  const id = sandbox.id('lifecycle-test');

  const created = await api.post<Container>('/containers', {
    id,
    bundle,
    start: true,
    labels: { lesson: '04' },
  });
  t.equal(created.status, 201);
  t.equal(created.body.status, 'running');
  t.same(created.body.labels, { lesson: '04' });
  const ps = await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['ps'] });
  t.match(ps.body.stdout, /^\s+1 \S+\s+sleep 999999$/m);
  t.equal((await api.get<Container[]>('/containers?status=running&label=lesson=04')).body.length, 1);
  t.equal((await api.get<Container[]>('/containers?status=created')).body.length, 0);
  t.equal((await api.post(`/containers/${id}/kill?signal=9`)).status, 204);
  t.match((await api.get<Container>(`/containers/${id}`)).body, { status: 'stopped', exitCode: 137 });
  t.equal((await api.delete(`/containers/${id}`)).status, 204);
});

t.test("the seed's verify steps: created vs running vs stopped", async (t) => {
  const sandbox = makeSandbox(t, 'verify');
  const bundle = sandbox.bundle('b');
  const api = client(await startInProcess(t, sandbox));
  const id = sandbox.id('state-test');

  await api.post('/containers', { id, bundle });
  t.equal((await api.get<Container>(`/containers/${id}`)).body.status, 'created', 'PASS: created state');
  await api.post(`/containers/${id}/start`);
  t.equal((await api.get<Container>(`/containers/${id}`)).body.status, 'running', 'PASS: running state');
  await api.post(`/containers/${id}/kill?signal=SIGKILL`);
  t.equal((await api.get<Container>(`/containers/${id}`)).body.status, 'stopped', 'PASS: stopped state');
  await api.delete(`/containers/${id}`);
  t.match((await api.get(`/containers/${id}`)).body.detail, /does not exist/, 'PASS: deleted');
});
