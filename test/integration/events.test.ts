import { execFileSync } from 'node:child_process';
import t from 'tap';
import { Agent, request } from 'undici';
import type { Container } from '../../src/schemas/container.js';
import type { ContainerEvent } from '../../src/schemas/events.js';
import { client, DaemonProcess, eventually, makeSandbox, startInProcess } from '../helpers/sandbox.js';

const parseNdjson = (body: string) =>
  body
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as ContainerEvent);

t.test('events of a full lifecycle arrive in order, filtered by id and type', async (t) => {
  const sandbox = makeSandbox(t, 'events');
  const daemon = await startInProcess(t, sandbox);
  const api = client(daemon);
  const since = new Date().toISOString();
  const id = sandbox.id('c');
  await api.post('/containers', { id, bundle: sandbox.bundle('b') });
  await api.post(`/containers/${id}/start`);
  await api.post(`/containers/${id}/exec`, { args: ['true'] });
  await api.post(`/containers/${id}/pause`);
  await api.post(`/containers/${id}/resume`);
  await api.post(`/containers/${id}/stop?timeout=0`);
  await api.post(`/containers/${id}/restart`);
  await api.post(`/containers/${id}/kill?signal=KILL`);
  await api.delete(`/containers/${id}`);
  const until = new Date().toISOString();

  const response = await daemon.app.inject({
    method: 'GET',
    url: `/events?since=${since}&until=${until}&id=${id}`,
  });
  t.equal(response.statusCode, 200);
  t.equal(response.headers['content-type'], 'application/x-ndjson');
  const events = parseNdjson(response.body);
  t.same(
    events.map((event) => event.type),
    ['create', 'start', 'exec', 'pause', 'resume', 'die', 'stop', 'restart', 'kill', 'die', 'delete'],
  );
  t.ok(
    events.every((event, index) => index === 0 || event.seq > events[index - 1]!.seq),
    'sequence increases',
  );
  t.match(
    events.find((event) => event.type === 'die'),
    { attributes: { exitCode: 137, oomKilled: false } },
  );
  t.match(
    events.find((event) => event.type === 'kill'),
    { attributes: { signal: 'SIGKILL' } },
  );

  const dies = parseNdjson(
    (
      await daemon.app.inject({
        method: 'GET',
        url: `/events?since=${since}&until=${until}&type=die&type=delete`,
      })
    ).body,
  );
  t.same(
    dies.map((event) => event.type),
    ['die', 'die', 'delete'],
  );

  const sse = await daemon.app.inject({
    method: 'GET',
    url: `/events?since=${since}&until=${until}&type=delete`,
    headers: { accept: 'text/event-stream' },
  });
  t.equal(sse.headers['content-type'], 'text/event-stream');
  t.match(sse.body, /^id: \d+\nevent: delete\ndata: \{.*"type":"delete".*\}\n\n$/);

  t.equal((await daemon.app.inject({ method: 'GET', url: '/events?since=noon' })).statusCode, 400);
  t.equal((await daemon.app.inject({ method: 'GET', url: '/events?type=explode' })).statusCode, 400);
});

t.test(
  'a kill -9 from the host is seen without polling, as a die event and a stopped container',
  async (t) => {
    const sandbox = makeSandbox(t, 'hostkill');
    const daemon = await startInProcess(t, sandbox);
    const api = client(daemon);
    const id = sandbox.id('victim');
    const created = await api.post<Container>('/containers', {
      id,
      bundle: sandbox.bundle('b'),
      start: true,
    });
    const dies: Array<{ at: number; event: ContainerEvent }> = [];
    const unsubscribe = daemon.containers.events.subscribe((event) => {
      if (event.type === 'die' && event.id === id) dies.push({ at: performance.now(), event });
    });
    t.teardown(unsubscribe);
    const killedAt = performance.now();
    execFileSync('kill', ['-9', String(created.body.pid)]);
    const seen = await eventually(async () => dies[0], 5_000);
    t.comment(
      `kill -9 to die event: ${(seen.at - killedAt).toFixed(1)} ms (target <= 100 ms, measured in bench/)`,
    );
    t.equal(seen.event.attributes.exitCode, 137);
    t.match((await api.get<Container>(`/containers/${id}`)).body, { status: 'stopped', exitCode: 137 });
    t.equal(dies.length, 1, 'exactly one die event');
  },
);

t.test('events replay after a daemon restart; an exit while the daemon is down emits one die', async (t) => {
  const sandbox = makeSandbox(t, 'replay');
  const daemon = new DaemonProcess(sandbox);
  t.teardown(() => daemon.close());
  await daemon.start();
  const since = new Date().toISOString();
  const id = sandbox.id('short');
  await daemon.request('POST', '/containers', {
    id,
    bundle: sandbox.bundle('short', ['sh', '-c', 'sleep 1; exit 5']),
    start: true,
  });
  await daemon.stop('SIGKILL');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await daemon.start();
  const dead = await daemon.request<Container>('GET', `/containers/${id}`);
  t.match(dead.body, { status: 'stopped', exitCode: 5 });

  // Restart once more: the die must not be emitted a second time.
  await daemon.stop('SIGTERM');
  await daemon.start();
  const until = new Date().toISOString();
  const response = await daemon.requestText(
    'GET',
    `/events?since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}&id=${id}`,
  );
  const events = parseNdjson(response);
  t.same(
    events.map((event) => event.type),
    ['create', 'start', 'die'],
  );
  t.match(events[2], { attributes: { exitCode: 5 } });
});

t.test(
  'GET /events answers with headers before any event, and what happens next is on the stream',
  async (t) => {
    const sandbox = makeSandbox(t, 'subscribe');
    const daemon = new DaemonProcess(sandbox);
    t.teardown(() => daemon.close());
    await daemon.start();
    // Without the headers, undici gives up after 10 s and the test fails instead of hanging.
    const agent = new Agent({ connect: { socketPath: sandbox.socket }, headersTimeout: 10_000 });
    t.teardown(() => agent.close());
    const controller = new AbortController();
    t.teardown(() => controller.abort());
    // No event can happen here before the headers: only the test acts on this daemon.
    const response = await request('http://localhost/events', {
      dispatcher: agent,
      signal: controller.signal,
    });
    t.equal(response.statusCode, 200);
    t.equal(response.headers['content-type'], 'application/x-ndjson');
    const id = sandbox.id('c');
    const firstLine = new Promise<string>((resolve) => {
      let buffer = '';
      response.body.setEncoding('utf8');
      response.body.on('data', (chunk: string) => {
        buffer += chunk;
        if (buffer.includes('\n')) resolve(buffer.slice(0, buffer.indexOf('\n')));
      });
      response.body.on('error', () => undefined);
    });
    t.equal((await daemon.request('POST', '/containers', { id, bundle: sandbox.bundle('b') })).status, 201);
    t.match(JSON.parse(await firstLine) as ContainerEvent, { type: 'create', id });
    t.equal((await daemon.request('DELETE', `/containers/${id}?force=true`)).status, 204);
  },
);

t.test(
  'a restarted container that dies at once has its die after the restart that began its run',
  async (t) => {
    const sandbox = makeSandbox(t, 'events-order');
    const daemon = await startInProcess(t, sandbox);
    const api = client(daemon);
    const since = new Date().toISOString();
    const id = sandbox.id('quick');
    await api.post('/containers', { id, bundle: sandbox.bundle('quick', ['true']), start: true });
    await eventually(async () =>
      (await api.get<Container>(`/containers/${id}`)).body.status === 'stopped' ? true : undefined,
    );
    await api.post(`/containers/${id}/restart`);
    await eventually(async () =>
      (await api.get<Container>(`/containers/${id}`)).body.status === 'stopped' ? true : undefined,
    );
    const response = await daemon.app.inject({
      method: 'GET',
      url: `/events?since=${since}&until=${new Date().toISOString()}&id=${id}`,
    });
    t.same(
      parseNdjson(response.body).map((event) => event.type),
      ['create', 'start', 'die', 'restart', 'die'],
    );
    await api.delete(`/containers/${id}`);
  },
);
