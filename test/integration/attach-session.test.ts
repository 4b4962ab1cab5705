import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import WebSocket from 'ws';
import type { AuditRecord } from '../../src/security/audit-log.js';
import { DaemonProcess, eventually, makeSandbox } from '../helpers/sandbox.js';

// Attaching to a container's own process over WebSocket (GET /containers/ID/attach/session), with the real ws
// client, conmon and runc: a terminal container typed into, resized, detached from with keys and attached to
// again, also after runcd was SIGKILLed; and the clients that misbehave, none of which may touch the container.
const sandbox = makeSandbox(t, 'wsattach');
const daemon = new DaemonProcess(sandbox);
t.teardown(() => daemon.close());

interface Attached {
  ws: WebSocket;
  screen: () => string;
  controls: Array<Record<string, unknown>>;
  started: Promise<Record<string, unknown>>;
  closed: Promise<{ code: number; reason: string }>;
  type: (keys: string | Buffer) => void;
  shows: (pattern: RegExp) => Promise<void>;
}

function attach(id: string, query = ''): Attached {
  const ws = new WebSocket(`ws+unix://${sandbox.socket}:/containers/${id}/attach/session?${query}`);
  const out: Buffer[] = [];
  const controls: Array<Record<string, unknown>> = [];
  let markStarted!: (value: Record<string, unknown>) => void;
  const started = new Promise<Record<string, unknown>>((resolve) => (markStarted = resolve));
  ws.on('message', (data: Buffer, binary: boolean) => {
    if (binary) out.push(data.subarray(1));
    else {
      const control = JSON.parse(data.toString()) as Record<string, unknown>;
      controls.push(control);
      if (control.type === 'started') markStarted(control);
    }
  });
  ws.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  const screen = () => Buffer.concat(out).toString();
  return {
    ws,
    screen,
    controls,
    started,
    closed,
    type: (keys) => ws.send(typeof keys === 'string' ? Buffer.from(keys) : keys, { binary: true }),
    shows: (pattern) =>
      eventually(async () => (pattern.test(screen()) ? true : undefined), 15_000).then(
        () => undefined,
        () => {
          throw new Error(`${pattern} never showed; the screen: ${JSON.stringify(screen())}`);
        },
      ),
  };
}

const statusOf = async (id: string) =>
  (await daemon.request<{ status: string; exitCode: number | null }>('GET', `/containers/${id}`)).body;

/** A plain HTTP status for an upgrade runcd refuses (101 if it accepted). */
const refusal = (path: string) =>
  new Promise<number>((resolve) => {
    const ws = new WebSocket(`ws+unix://${sandbox.socket}:${path}`);
    ws.on('unexpected-response', (_request, response) => {
      resolve(response.statusCode ?? 0);
      response.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      resolve(101);
      ws.terminate();
    });
    ws.on('error', () => undefined);
  });

const shell = sandbox.id('shell');

t.before(async () => {
  await daemon.start();
  const bundle = sandbox.bundle('tty', ['sh'], (spec) => {
    (spec.process as Record<string, unknown>).terminal = true;
  });
  const created = await daemon.request('POST', '/containers', { id: shell, bundle });
  if (created.status !== 201) throw new Error(`create: ${created.status} ${JSON.stringify(created.body)}`);
});
t.teardown(() => daemon.request('DELETE', `/containers/${shell}?force=true`).catch(() => undefined));

t.test('attached before the start, typed into, resized, detached with ctrl-p ctrl-q', async (t) => {
  const session = attach(shell);
  await eventually(async () => (session.ws.readyState === WebSocket.OPEN ? true : undefined));
  // ^C in the pty of a created container would kill runc's init: it must wait for the start.
  session.type(Buffer.from([3]));
  session.type('X=kept-$((40+2))\n');
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.equal((await statusOf(shell)).status, 'created', 'the container is still created');
  t.notOk(
    session.controls.some((control) => control.type === 'started'),
    'no input has gone anywhere yet',
  );
  t.equal((await daemon.request('POST', `/containers/${shell}/start`)).status, 200, 'started');
  const started = await session.started;
  t.match(started, { type: 'started', pid: Number, tty: true, stdin: true }, 'input flows from the start');
  session.type('stty size; echo "x is $X"\n');
  await session.shows(/24 80\r\nx is kept-42\r\n/);
  t.pass('what was typed before the start ran after it, at 24x80');
  t.equal((await statusOf(shell)).status, 'running', 'the held ^C did not kill the container');

  session.ws.send(JSON.stringify({ type: 'resize', rows: 40, cols: 132 }));
  await new Promise((resolve) => setTimeout(resolve, 200));
  session.type('stty size\n');
  await session.shows(/40 132\r\n/);
  t.pass('a resize reaches the terminal');

  session.type(Buffer.from([0x10, 0x11]));
  const closed = await session.closed;
  t.same(session.controls.at(-1), { type: 'detached' }, 'ctrl-p ctrl-q detach');
  t.equal(closed.code, 1000, 'with a normal close');
  t.equal((await statusOf(shell)).status, 'running', 'the container runs on');
});

t.test('attached again, with detach keys of its own: the same shell', async (t) => {
  const session = attach(shell, `detachKeys=${encodeURIComponent('ctrl-a,d')}`);
  t.match(await session.started, { type: 'started' }, 'a running container takes input at once');
  session.type('stty size; echo "still $X"\n');
  await session.shows(/40 132\r\nstill kept-42\r\n/);
  t.pass("the shell's variables and its terminal size outlived the detach");
  session.type(Buffer.from([1]));
  session.type('d');
  await session.closed;
  t.same(session.controls.at(-1), { type: 'detached' }, 'ctrl-a d detach');
});

t.test('an attach outlives a SIGKILL of runcd: conmon holds the pty', async (t) => {
  const before = attach(shell);
  await before.started;
  before.type('Y=before-the-kill\n');
  await before.shows(/Y=before-the-kill/);
  await daemon.stop('SIGKILL');
  await before.closed;
  await daemon.start();
  t.equal((await statusOf(shell)).status, 'running', 'the container ran on without runcd');
  const after = attach(shell);
  await after.started;
  after.type('echo "y is $Y"\n');
  await after.shows(/y is before-the-kill\r\n/);
  t.pass('the restarted runcd attached to the same shell');
  after.ws.close();
  await after.closed;
});

t.test('leaving or misbehaving never touches the container', async (t) => {
  const rude = attach(shell);
  await rude.started;
  rude.ws.terminate();
  await rude.closed;
  for (const garbage of ['{"type":"resize","rows":"many"}', 'not json', '{"type":"explode"}']) {
    const session = attach(shell);
    await session.started;
    session.ws.send(garbage);
    const closed = await session.closed;
    t.equal(closed.code, 1008, `${garbage}: closed with 1008`);
    t.match(closed.reason, /malformed control frame/, 'saying why');
  }
  t.equal((await daemon.request('GET', '/healthz')).status, 200, 'the daemon is fine');
  t.equal((await statusOf(shell)).status, 'running', 'and the container runs on');
  const again = attach(shell);
  await again.started;
  again.type('echo alive-$((3*3))\n');
  await again.shows(/alive-9\r\n/);
  t.pass('and still answers');
  again.ws.close();
  await again.closed;
});

t.test('bad requests are HTTP errors before any upgrade', async (t) => {
  const plain = await daemon.request('GET', `/containers/${shell}/attach/session`);
  t.match(plain, { status: 426, body: { code: 'websocket_required' } }, 'no Upgrade: 426');
  const keys = await daemon.request('GET', `/containers/${shell}/attach/session?detachKeys=ctrl-1`);
  t.match(keys, { status: 400, body: { code: 'invalid_query' } }, 'unknown detach keys: 400');
  t.match(keys.body, { detail: /unknown detach key "ctrl-1"/ }, 'naming the key');
  t.equal(await refusal(`/containers/${shell}/attach/session?detachKeys=ctrl-1`), 400);
  t.equal(await refusal(`/containers/${sandbox.id('nope')}/attach/session`), 404, 'no container');
  const stopped = sandbox.id('stopped');
  await daemon.request('POST', '/containers', {
    id: stopped,
    bundle: sandbox.bundle('true', ['true']),
    start: true,
  });
  t.teardown(() => daemon.request('DELETE', `/containers/${stopped}?force=true`));
  await eventually(async () => ((await statusOf(stopped)).status === 'stopped' ? true : undefined), 10_000);
  t.equal(await refusal(`/containers/${stopped}/attach/session`), 409, 'a stopped container');
});

t.test('a container without a terminal: its output, no stdin', async (t) => {
  const id = sandbox.id('ticker');
  const bundle = sandbox.bundle('ticker', [
    'sh',
    '-c',
    'while true; do echo tick; echo tock >&2; sleep 0.2; done',
  ]);
  await daemon.request('POST', '/containers', { id, bundle, start: true });
  t.teardown(() => daemon.request('DELETE', `/containers/${id}?force=true`));
  const session = attach(id);
  t.match(await session.started, { tty: false, stdin: false }, 'no terminal, no stdin');
  const streams = new Set<number>();
  session.ws.on('message', (data: Buffer, binary: boolean) => {
    if (binary) streams.add(data[0]!);
  });
  await eventually(async () => (streams.size === 2 ? true : undefined), 10_000);
  t.same([...streams].sort(), [1, 2], 'stdout and stderr, each its own stream');
  session.ws.close();
  await session.closed;
});

t.test('the container ending ends the attachment with its exit code; each one was audited', async (t) => {
  const session = attach(shell);
  await session.started;
  session.type('exit 7\n');
  const closed = await session.closed;
  t.same(session.controls.at(-1), { type: 'exit', exitCode: 7 }, "the shell's exit code is the last frame");
  t.equal(closed.code, 1000);
  t.match(await statusOf(shell), { status: 'stopped', exitCode: 7 });
  // Seven attachments ran to their end on this runcd (one more on the runcd that was killed).
  const attachments = () =>
    readFileSync(join(sandbox.stateDir, 'audit.log'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as AuditRecord)
      .filter((record) => record.route === '/containers/:id/attach/session' && record.status === 101);
  await eventually(async () => (attachments().length >= 7 ? true : undefined)).catch(() => undefined);
  t.ok(attachments().length >= 7, `every attachment left an audit record (${attachments().length})`);
  t.match(attachments()[0], { method: 'GET', outcome: 'ok', containerId: shell, transport: 'unix' });
});
