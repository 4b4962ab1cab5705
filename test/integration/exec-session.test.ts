import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { AttachConnection, resizeTerminal, type OutputStream } from '../../src/runtime/attach-socket.js';
import { startExecSession, type ExecSessionHost } from '../../src/runtime/exec-session.js';
import type { OciProcess } from '../../src/runtime/oci.js';
import { ProcessRunner } from '../../src/runtime/process-runner.js';
import { RuntimeError } from '../../src/runtime/runc.js';
import { CONMON_BINARY, RUNTIME_BINARY, eventually, makeSandbox } from '../helpers/sandbox.js';

// The runtime layer of interactive exec, against real conmon and runc: no daemon, no HTTP.
const sandbox = makeSandbox(t, 'exec-session');
const containerId = sandbox.id('c');
// stdio ignored: runc create hands its stdio to the container's init, which would hold a pipe open forever.
const runc = (...args: string[]) =>
  execFileSync(RUNTIME_BINARY, ['--root', sandbox.runtimeRoot, ...args], { stdio: 'ignore' });
const bundle = sandbox.bundle('exec-session');
runc('create', '--bundle', bundle, containerId);
runc('start', containerId);
t.teardown(() => {
  try {
    runc('delete', '--force', containerId);
  } catch {
    // gone already
  }
});

const host: ExecSessionHost = {
  conmonBinary: CONMON_BINARY,
  runtimeBinary: RUNTIME_BINARY,
  runtimeArgs: [`--root=${sandbox.runtimeRoot}`],
  runner: new ProcessRunner(),
  timeoutMs: 10_000,
};
const baseProcess: OciProcess = { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/', env: ['PATH=/bin'] };
let sessions = 0;

async function session(
  args: string[],
  options: { tty: boolean; stdin: boolean; consoleSize?: { height: number; width: number } },
  input: (connection: AttachConnection, dir: string) => Promise<void>,
) {
  const sessionId = sandbox.id(`s${++sessions}`);
  const dir = join(sandbox.stateDir, 'sessions', sessionId);
  const fifo = join(sandbox.stateDir, `${sessionId}.fifo`);
  execFileSync('mkdir', ['-p', join(sandbox.stateDir, 'sessions')]);
  execFileSync('mkfifo', [fifo]);
  const output: Record<OutputStream, Buffer[]> = { stdout: [], stderr: [] };
  let connection: AttachConnection | undefined;
  let closed!: () => void;
  const done = new Promise<void>((resolve) => (closed = resolve));
  const process: OciProcess = { ...baseProcess, args };
  if (options.consoleSize) process.consoleSize = options.consoleSize;
  const started = await startExecSession(
    host,
    { containerId, sessionId, dir, syncFifo: fifo, process, tty: options.tty, stdin: options.stdin },
    async (attachDir) => {
      connection = await AttachConnection.connect(attachDir, {
        onOutput: (stream, data) => output[stream].push(data),
        onClose: () => closed(),
      });
    },
  );
  await input(connection!, dir);
  const exitCode = await started.exited;
  await done;
  return {
    exitCode,
    pid: started.pid,
    stdout: Buffer.concat(output.stdout),
    stderr: Buffer.concat(output.stderr),
    dir,
  };
}

t.test('a pipe session passes stdin byte for byte and reports the exit code', async (t) => {
  const input = randomBytes(1024 * 1024 + 7);
  const result = await session(
    ['sh', '-c', 'cat; echo err >&2; exit 4'],
    { tty: false, stdin: true },
    async (c) => {
      await c.write(input);
      c.endInput();
    },
  );
  t.equal(result.exitCode, 4);
  t.equal(result.stdout.length, input.length);
  t.equal(
    createHash('sha256').update(result.stdout).digest('hex'),
    createHash('sha256').update(input).digest('hex'),
  );
  t.equal(result.stderr.toString(), 'err\n');
});

t.test('a terminal session echoes, sizes and exits with the shell status', async (t) => {
  const result = await session(
    ['sh'],
    { tty: true, stdin: true, consoleSize: { height: 33, width: 77 } },
    async (c, dir) => {
      await c.write(Buffer.from('stty size\n'));
      await new Promise((resolve) => setTimeout(resolve, 200));
      resizeTerminal(dir, 40, 132);
      await new Promise((resolve) => setTimeout(resolve, 100));
      await c.write(Buffer.from('stty size; tty; echo $((6*7)); exit 3\n'));
    },
  );
  const text = result.stdout.toString();
  t.equal(result.exitCode, 3);
  t.match(text, /33 77\r\n/);
  t.match(text, /40 132\r\n/);
  t.match(text, /\/dev\/pts\/\d+\r\n/);
  t.match(text, /42\r\n/);
  t.equal(result.stderr.length, 0, 'a terminal has one stream');
  // conmon removes it as it exits, a moment after the exit code is reported.
  await eventually(async () => (existsSync(join(result.dir, 'attach')) ? undefined : true)).catch(
    () => false,
  );
  t.notOk(existsSync(join(result.dir, 'attach')), 'conmon removed the attach socket at exit');
});

t.test('an exec runc refuses is a RuntimeError with runc words', async (t) => {
  const error = await session(['/nonexistent'], { tty: false, stdin: false }, async () => {}).catch(
    (e: unknown) => e,
  );
  t.type(error, RuntimeError);
  t.equal((error as RuntimeError).kind, 'executable_not_found');
  t.match((error as RuntimeError).message, /nonexistent/);
});
