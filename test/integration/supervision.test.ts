import t from 'tap';
import type { Container, ContainerStats, ExecResult } from '../../src/schemas/container.js';
import { client, eventually, makeSandbox, startInProcess } from '../helpers/sandbox.js';

t.test('restart, restart policies, pause, processes, stats and OOM', async (t) => {
  const sandbox = makeSandbox(t, 'sup');
  const daemon = await startInProcess(t, sandbox);
  const api = client(daemon);
  const sleeper = sandbox.bundle('sleeper');
  const until = (id: string, predicate: (container: Container) => boolean, timeoutMs = 10_000) =>
    eventually(async () => {
      const container = (await api.get<Container>(`/containers/${id}`)).body;
      return predicate(container) ? container : undefined;
    }, timeoutMs);

  await t.test('restart keeps id and bundle and gives a new pid', async (t) => {
    const id = sandbox.id('restart');
    const first = (await api.post<Container>('/containers', { id, bundle: sleeper, start: true })).body;
    const restarted = await api.post<Container>(`/containers/${id}/restart?timeout=0`);
    t.equal(restarted.status, 200);
    t.match(restarted.body, { id, bundle: sleeper, status: 'running', restartCount: 0 });
    t.not(restarted.body.pid, first.pid, 'new init pid');
    const ps = await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['ps'] });
    t.match(ps.body.stdout, /sleep 999999/);
    await api.delete(`/containers/${id}?force=true`);
  });

  await t.test('on-failure restarts a failing container up to maxRetries, with backoff', async (t) => {
    const id = sandbox.id('flaky');
    const failing = sandbox.bundle('failing', ['sh', '-c', 'exit 1']);
    await api.post('/containers', {
      id,
      bundle: failing,
      start: true,
      restartPolicy: { name: 'on-failure', maxRetries: 3 },
    });
    const done = await until(
      id,
      (container) => container.restartCount === 3 && container.status === 'stopped',
    );
    t.match(done, { exitCode: 1, restartCount: 3, restartPolicy: { name: 'on-failure', maxRetries: 3 } });
    await new Promise((resolve) => setTimeout(resolve, 1200));
    t.equal((await api.get<Container>(`/containers/${id}`)).body.restartCount, 3, 'no fourth restart');
    await api.delete(`/containers/${id}`);
  });

  await t.test('on-failure does not restart a clean exit; always does, but never after a stop', async (t) => {
    const clean = sandbox.id('clean');
    await api.post('/containers', {
      id: clean,
      bundle: sandbox.bundle('clean', ['true']),
      start: true,
      restartPolicy: { name: 'on-failure' },
    });
    await until(clean, (container) => container.status === 'stopped');
    await new Promise((resolve) => setTimeout(resolve, 500));
    t.equal((await api.get<Container>(`/containers/${clean}`)).body.restartCount, 0);

    const always = sandbox.id('always');
    const first = (
      await api.post<Container>('/containers', {
        id: always,
        bundle: sleeper,
        start: true,
        restartPolicy: { name: 'always' },
      })
    ).body;
    process.kill(first.pid, 'SIGKILL'); // a crash, not a caller's request
    const second = await until(
      always,
      (container) => container.restartCount === 1 && container.status === 'running',
    );
    t.not(second.pid, first.pid);
    const stopped = await api.post<Container>(`/containers/${always}/stop?timeout=0`);
    t.equal(stopped.body.status, 'stopped');
    await new Promise((resolve) => setTimeout(resolve, 800));
    t.match(
      (await api.get<Container>(`/containers/${always}`)).body,
      { status: 'stopped', restartCount: 1 },
      'stop is final',
    );
    await api.post(`/containers/${always}/start`);
    await api.post(`/containers/${always}/kill?signal=KILL`);
    await new Promise((resolve) => setTimeout(resolve, 800));
    t.equal(
      (await api.get<Container>(`/containers/${always}`)).body.status,
      'stopped',
      "a caller's kill is final too",
    );
    await api.delete(`/containers/${always}`);
    await api.delete(`/containers/${clean}`);
  });

  await t.test('pause, exec while paused, resume', async (t) => {
    const id = sandbox.id('pausable');
    await api.post('/containers', { id, bundle: sleeper, start: true });
    const paused = await api.post<Container>(`/containers/${id}/pause`);
    t.equal(paused.body.status, 'paused');
    const exec = await api.post(`/containers/${id}/exec`, { args: ['ps'] });
    t.equal(exec.status, 409);
    t.match(exec.body, { code: 'container_paused', detail: /paused/ });
    t.equal((await api.post(`/containers/${id}/pause`)).status, 409, 'pause twice');
    t.equal((await api.post<Container>(`/containers/${id}/resume`)).body.status, 'running');
    t.equal((await api.post(`/containers/${id}/resume`)).status, 409, 'resume a running container');
    t.equal((await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['true'] })).body.exitCode, 0);
    await api.post(`/containers/${id}/pause`);
    const stopped = await api.post<Container>(`/containers/${id}/stop?timeout=0`);
    t.match(stopped.body, { status: 'stopped', exitCode: 137 }, 'a paused container can be stopped');
    await api.delete(`/containers/${id}`);
  });

  await t.test('processes lists PID 1 with its command line; stats shows memory', async (t) => {
    const id = sandbox.id('observed');
    const created = await api.post<Container>('/containers', { id, bundle: sleeper, start: true });
    const processes = await api.get<Array<{ pid: number; command: string; user: string; ppid: number }>>(
      `/containers/${id}/processes`,
    );
    t.equal(processes.status, 200);
    t.match(processes.body, [{ pid: created.body.pid, command: 'sleep 999999', user: 'root' }]);
    const stats = await api.get<ContainerStats>(`/containers/${id}/stats`);
    t.equal(stats.status, 200);
    t.ok(stats.body.memory.usageBytes > 0, 'memory usage reported');
    t.ok(stats.body.pids.current >= 1, 'pids reported');
    t.equal(stats.body.memory.limitBytes, null, 'no limit in this bundle');
    const streaming = daemon.app.inject({
      method: 'GET',
      url: `/containers/${id}/stats?stream=true&interval=1`,
    });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await api.delete(`/containers/${id}?force=true`);
    const stream = await streaming;
    t.equal(stream.headers['content-type'], 'application/x-ndjson');
    const snapshots = stream.body
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as ContainerStats);
    t.ok(snapshots.length >= 2, `a snapshot per interval until the container stopped (${snapshots.length})`);
    t.ok(snapshots.every((snapshot) => snapshot.id === id && snapshot.memory.usageBytes > 0));
    t.equal((await api.get(`/containers/${id}/stats`)).status, 404);
  });

  await t.test('an OOM-killed container reports oomKilled', async (t) => {
    const id = sandbox.id('oom');
    const hog = sandbox.bundle('hog', ['sh', '-c', 'x=aaaaaaaa; while true; do x=$x$x; done'], (spec) => {
      (spec.linux as { resources: Record<string, unknown> }).resources = {
        ...((spec.linux as { resources?: Record<string, unknown> }).resources ?? {}),
        memory: { limit: 32 * 1024 * 1024, swap: 32 * 1024 * 1024 },
      };
    });
    await api.post('/containers', { id, bundle: hog, start: true });
    const dead = await until(id, (container) => container.status === 'stopped', 30_000);
    t.match(dead, { exitCode: 137, oomKilled: true });
    await api.delete(`/containers/${id}`);
  });
});
