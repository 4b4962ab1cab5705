import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import WebSocket from 'ws';
import { DaemonProcess, eventually, makeSandbox } from '../helpers/sandbox.js';

// runcd's interactive exec over WebSocket (GET /containers/ID/exec/session), with the real ws client, conmon and
// runc: a terminal (size, resize, ^C, exit code), a pipe (stdin byte for byte, two streams), and the ways a
// client can misbehave (leave, send garbage, never come back), none of which may leave a process behind.
const sandbox = makeSandbox(t, 'wsexec');
const daemon = new DaemonProcess(sandbox);
t.teardown(() => daemon.close());
const id = sandbox.id('c');

interface Session {
  ws: WebSocket;
  stdout: () => string;
  stdoutBytes: () => Buffer;
  stderr: () => string;
  controls: Array<Record<string, unknown>>;
  started: Promise<Record<string, unknown>>;
  closed: Promise<{ code: number; reason: string }>;
  send: (text: string | Buffer) => void;
  waitFor: (pattern: RegExp) => Promise<void>;
}

function open(query: string): Session {
  const ws = new WebSocket(`ws+unix://${sandbox.socket}:/containers/${id}/exec/session?${query}`);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const controls: Array<Record<string, unknown>> = [];
  let markStarted!: (value: Record<string, unknown>) => void;
  const started = new Promise<Record<string, unknown>>((resolve) => (markStarted = resolve));
  ws.on('message', (data: Buffer, binary: boolean) => {
    if (binary) (data[0] === 2 ? err : out).push(data.subarray(1));
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
  const stdoutBytes = () => Buffer.concat(out);
  return {
    ws,
    stdoutBytes,
    stdout: () => stdoutBytes().toString(),
    stderr: () => Buffer.concat(err).toString(),
    controls,
    started,
    closed,
    send: (data) => ws.send(typeof data === 'string' ? Buffer.from(data) : data, { binary: true }),
    waitFor: (pattern) =>
      eventually(async () => (pattern.test(stdoutBytes().toString()) ? true : undefined), 10_000).then(
        () => undefined,
      ),
  };
}

/** Running (a zombie nobody reaped yet does not count). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

t.before(async () => {
  await daemon.start();
  const created = await daemon.request('POST', '/containers', {
    id,
    bundle: sandbox.bundle('c'),
    start: true,
  });
  if (created.status !== 201) throw new Error(`create: ${created.status}`);
});

t.test('a terminal session: size at start, resize, echo, ^C, exit code', async (t) => {
  const session = open('args=sh&tty=true&rows=33&cols=77');
  const started = await session.started;
  t.match(started, { type: 'started', pid: Number }, 'started, with the pid');
  session.send('stty size; echo $((6*7))\n');
  await session.waitFor(/33 77\r\n42\r\n/);
  t.pass('the size given at start is the terminal size');
  session.ws.send(JSON.stringify({ type: 'resize', rows: 40, cols: 132 }));
  await new Promise((resolve) => setTimeout(resolve, 200));
  session.send('stty size\n');
  await session.waitFor(/40 132\r\n/);
  t.pass('a resize reaches the terminal');
  session.send('sleep 30; echo $((1+1))done\n');
  await new Promise((resolve) => setTimeout(resolve, 300));
  session.send(Buffer.from([3]));
  session.send('echo "after $?"; tty\n');
  await session.waitFor(/after 130\r\n\/dev\/pts\/\d+/);
  // The echo of the typed line shows `$((1+1))done`; only a sleep that ran out would print `2done`.
  t.notMatch(session.stdout(), /2done/, '^C interrupted sleep');
  session.send('exit 3\n');
  const closed = await session.closed;
  t.same(session.controls.at(-1), { type: 'exit', exitCode: 3 }, "the shell's exit code is the last frame");
  t.equal(closed.code, 1000, 'then a normal close');
  t.equal(session.stderr(), '', 'a terminal has one stream');
});

t.test('a pipe session: 4 MiB of stdin byte for byte, EOF, both streams', async (t) => {
  const input = randomBytes(4 * 1024 * 1024 + 3);
  const session = open('args=sh&args=-c&args=cat%3B%20echo%20err%20%3E%262%3B%20exit%205');
  await session.started;
  for (let offset = 0; offset < input.length; offset += 256 * 1024) {
    session.send(input.subarray(offset, offset + 256 * 1024));
  }
  session.ws.send(JSON.stringify({ type: 'eof' }));
  await session.closed;
  const digest = (data: Buffer) => createHash('sha256').update(data).digest('hex');
  t.equal(session.stdoutBytes().length, input.length, 'every byte came back');
  t.equal(digest(session.stdoutBytes()), digest(input), 'byte for byte');
  t.equal(session.stderr(), 'err\n', 'stderr is its own stream');
  t.same(session.controls.at(-1), { type: 'exit', exitCode: 5 });
});

t.test('bad requests are HTTP errors before any upgrade', async (t) => {
  const plain = await daemon.request('GET', `/containers/${id}/exec/session?args=sh`);
  t.match(plain, { status: 426, body: { code: 'websocket_required' } }, 'no Upgrade: 426');
  const expectRefusal = (query: string, path = `/containers/${id}/exec/session`) =>
    new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws+unix://${sandbox.socket}:${path}?${query}`);
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
  t.equal(await expectRefusal('args=/nonexistent'), 400, 'a missing command');
  t.equal(await expectRefusal('args=sh&rows=0&cols=10'), 400, 'a zero-row terminal');
  t.equal(await expectRefusal('tty=true'), 400, 'no command');
  t.equal(
    await expectRefusal('args=sh', `/containers/${sandbox.id('nope')}/exec/session`),
    404,
    'no container',
  );
});

t.test('a client that leaves, or sends garbage, ends its process', async (t) => {
  const leaving = open('args=sleep&args=300');
  const { pid } = (await leaving.started) as { pid: number };
  t.ok(alive(pid), 'the process runs');
  leaving.ws.terminate();
  await eventually(async () => (alive(pid) ? undefined : true), 10_000);
  t.notOk(alive(pid), 'gone once its client left (SIGHUP)');

  const rude = open('args=sh&tty=true');
  const rudePid = ((await rude.started) as { pid: number }).pid;
  rude.ws.send('{"type":"resize","rows":"many"}');
  const closed = await rude.closed;
  t.equal(closed.code, 1008, 'a malformed control frame closes with 1008');
  await eventually(async () => (alive(rudePid) ? undefined : true), 10_000);
  t.notOk(alive(rudePid), 'and its process ends');
  t.equal((await daemon.request('GET', '/healthz')).status, 200, 'the daemon is fine');
});

t.test('200 sessions opened and abandoned leave nothing behind', async (t) => {
  const pids: number[] = [];
  for (let round = 0; round < 20; round++) {
    const batch = Array.from({ length: 10 }, () => open('args=sh&tty=true'));
    for (const session of batch) pids.push(((await session.started) as { pid: number }).pid);
    for (const session of batch) session.ws.terminate();
  }
  await eventually(async () => (pids.some(alive) ? undefined : true), 20_000);
  t.notOk(pids.some(alive), 'every process ended');
  const sessionsDir = join(sandbox.stateDir, 'sessions');
  await eventually(
    async () => (existsSync(sessionsDir) && readdirSync(sessionsDir).length === 0 ? true : undefined),
    20_000,
  );
  t.same(readdirSync(sessionsDir), [], 'no session files left');
  const exec = await daemon.request<{ exitCode: number }>('POST', `/containers/${id}/exec`, {
    args: ['true'],
  });
  t.equal(exec.body.exitCode, 0, 'the container still execs');
});

t.test('a session outlived by a SIGKILLed runcd is ended at its next start', async (t) => {
  const session = open('args=sleep&args=300');
  const { pid } = (await session.started) as { pid: number };
  await daemon.stop('SIGKILL');
  await session.closed;
  t.ok(alive(pid), "the session's conmon kept the process while runcd was down");
  await daemon.start();
  await eventually(async () => (alive(pid) ? undefined : true), 10_000).catch(() => undefined);
  t.notOk(alive(pid), 'the restarted runcd ended it (its client is gone)');
  t.same(readdirSync(join(sandbox.stateDir, 'sessions')), [], 'and removed its files');
  const exec = await daemon.request<{ exitCode: number }>('POST', `/containers/${id}/exec`, {
    args: ['true'],
  });
  t.equal(exec.body.exitCode, 0, 'the container runs on');
});
