import t from 'tap';
import { Agent, request } from 'undici';
import { DaemonProcess, makeSandbox } from '../helpers/sandbox.js';

t.test('GET /events with an until beyond 24.8 days keeps streaming (no timer overflow)', async (t) => {
  const sandbox = makeSandbox(t, 'until');
  const daemon = new DaemonProcess(sandbox);
  t.teardown(() => daemon.close());
  await daemon.start();
  const agent = new Agent({ connect: { socketPath: sandbox.socket }, headersTimeout: 10_000 });
  t.teardown(() => agent.close());
  const controller = new AbortController();
  t.teardown(() => controller.abort());
  // Unix seconds of 2286: setTimeout would get ~1e13 ms, above its 2^31-1 limit, and fire after 1 ms instead.
  const response = await request('http://localhost/events?until=9999999999', {
    dispatcher: agent,
    signal: controller.signal,
  });
  t.equal(response.statusCode, 200);
  const firstLine = new Promise<string>((resolve) => {
    let buffer = '';
    response.body.setEncoding('utf8');
    response.body.on('data', (chunk: string) => {
      buffer += chunk;
      if (buffer.includes('\n')) resolve(buffer.slice(0, buffer.indexOf('\n')));
    });
    response.body.on('end', () => resolve('(the stream ended)'));
    response.body.on('error', () => undefined);
  });
  const id = sandbox.id('c');
  t.equal((await daemon.request('POST', '/containers', { id, bundle: sandbox.bundle('b') })).status, 201);
  t.match(await firstLine, /"type":"create"/, 'the create event arrives on the stream');
  t.equal((await daemon.request('DELETE', `/containers/${id}?force=true`)).status, 204);
});
