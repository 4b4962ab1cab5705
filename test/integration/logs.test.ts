import t from 'tap';
import type { Container } from '../../src/schemas/container.js';
import { client, eventually, makeSandbox, startInProcess } from '../helpers/sandbox.js';

t.test('logs', async (t) => {
  const sandbox = makeSandbox(t, 'logs');
  const daemon = await startInProcess(t, sandbox);
  const api = client(daemon);
  const chatty = sandbox.bundle('chatty', [
    'sh',
    '-c',
    'echo one; echo two >&2; echo three; printf "no newline"; sleep 1; echo later; exec sleep 999',
  ]);
  const id = sandbox.id('chatty');
  await api.post('/containers', { id, bundle: chatty, start: true });
  const logs = async (query: string, accept?: string) => {
    const response = await daemon.app.inject({
      method: 'GET',
      url: `/containers/${id}/logs${query}`,
      headers: accept ? { accept } : {},
    });
    return { status: response.statusCode, type: response.headers['content-type'], body: response.body };
  };
  await eventually(async () => ((await logs('')).body.includes('three') ? true : undefined));

  t.test('plain text, both streams', async (t) => {
    const all = await logs('');
    t.equal(all.status, 200);
    t.match(all.type, /^text\/plain/);
    // conmon reads stdout and stderr separately, so only the order within a stream is guaranteed.
    t.match(all.body, /^one\n(two\n)?three\n/);
    t.match(all.body, /two\n/);
  });

  t.test('stream filter and tail', async (t) => {
    t.match((await logs('?stream=stderr')).body, /^two\n$/);
    t.match((await logs('?stream=stdout')).body, /^one\nthree\n/);
    t.equal(
      (await logs('?stream=stdout&tail=2')).body,
      'three\nno newline\n',
      'a line in progress shows as is',
    );
    t.equal((await logs('?tail=0')).body, '');
  });

  t.test('timestamps and NDJSON', async (t) => {
    t.match((await logs('?stream=stderr&timestamps=true')).body, /^\d{4}-\d\d-\d\dT\S+ two\n$/);
    const ndjson = await logs('?stream=stdout', 'application/x-ndjson');
    t.equal(ndjson.type, 'application/x-ndjson');
    const lines = ndjson.body
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { stream: string; line: string; time: string });
    t.match(lines[0], { stream: 'stdout', line: 'one', time: /^\d{4}-/ });
    const since = (await logs('?since=2999-01-01T00:00:00Z')).body;
    t.equal(since, '', 'since in the future selects nothing');
    t.equal((await logs('?until=2000-01-01T00:00:00Z')).body, '', 'until in the past selects nothing');
  });

  t.test(
    'follow sees a line written after the request started and ends when the container stops',
    async (t) => {
      const follower = sandbox.id('follower');
      const bundle = sandbox.bundle('follower', [
        'sh',
        '-c',
        'echo first; sleep 1; echo second; sleep 1; printf tail',
      ]);
      await api.post('/containers', { id: follower, bundle, start: true });
      const response = await daemon.app.inject({
        method: 'GET',
        url: `/containers/${follower}/logs?follow=true`,
      });
      t.equal(response.body, 'first\nsecond\ntail\n', 'the partial last line is joined and flushed');
      t.equal((await api.get<Container>(`/containers/${follower}`)).body.status, 'stopped');
      await api.delete(`/containers/${follower}`);
    },
  );

  t.test('bad queries and unknown containers', async (t) => {
    t.equal((await logs('?tail=-1')).status, 400);
    t.equal((await logs('?stream=both')).status, 400);
    t.equal((await logs('?since=yesterday')).status, 400);
    const missing = await daemon.app.inject({ method: 'GET', url: `/containers/${sandbox.id('nope')}/logs` });
    t.equal(missing.statusCode, 404);
    t.equal(missing.headers['content-type'], 'application/problem+json; charset=utf-8');
  });

  t.test('partial lines are joined: "no newline" continues into the next write', async (t) => {
    const seen = await eventually(async () => {
      const body = (await logs('?stream=stdout')).body;
      return body.includes('later') ? body : undefined;
    }, 5000);
    t.match(seen, /three\nno newlinelater\n/);
  });
});
