import { mkdirSync, readFileSync, writeFileSync, closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { OciProcess } from './oci.js';
import { killProcessGroup, type ProcessRunner } from './process-runner.js';
import { RuntimeError, classifyRuntimeMessage } from './runc.js';
import { openSyncChannel, type SyncMessage } from './sync-fifo.js';

/**
 * An interactive exec session: one conmon per session (`-e --exec-attach`), which runs `runc exec --detach
 * [--tty --console-socket]` and stays the process's parent, so its exit code reaches runcd on the sync channel
 * (and in an exit file, for a runcd that was restarted meanwhile). Node cannot be a subreaper, so this is the only
 * way an exec with a terminal keeps its exit code. The protocol (podman's attachToExec, verified with conmon 2.1.6):
 * 1. one byte on the start pipe: conmon sets up and answers `{"data": 0}` on the attach pipe once `attach` and
 *    `ctl` exist in the session directory;
 * 2. runcd connects to the attach socket (so no output is lost), then a second byte on the start pipe makes
 *    conmon run `runc exec`;
 * 3. the sync channel says `{"data": PID}`, later `{"data": EXIT_CODE}`; a failed exec says `{"data": -1,
 *    "message": runc's words}`.
 * The sync channel is a FIFO conmon holds read-write (see sync-fifo.ts): a runcd killed mid-session does not make
 * conmon's report fail, and the exit file stays readable.
 */

export interface ExecSessionSpec {
  containerId: string;
  sessionId: string;
  /** Where the session's files live: process.json, pidfile, exits/, and conmon's attach socket and ctl FIFO. */
  dir: string;
  /** A FIFO for the sync channel, already in place (conmon.ts keeps a pool). */
  syncFifo: string;
  process: OciProcess;
  /** A terminal: runc allocates the pty through conmon's console socket; output is one stream. */
  tty: boolean;
  /** The process gets a stdin (the attach socket's input); without it stdin is /dev/null. */
  stdin: boolean;
}

export interface ExecSessionHost {
  conmonBinary: string;
  runtimeBinary: string;
  runtimeArgs: readonly string[];
  runner: ProcessRunner;
  timeoutMs: number;
}

export interface StartedExecSession {
  pid: number;
  conmonPid: number | undefined;
  /** The exit code: from conmon's report, or its exit file when the report was lost. */
  exited: Promise<number>;
}

/** Runs the session's conmon; `attach(dir)` is called between conmon's setup and the exec itself. */
export async function startExecSession(
  host: ExecSessionHost,
  spec: ExecSessionSpec,
  attach: (dir: string) => Promise<void>,
): Promise<StartedExecSession> {
  mkdirSync(join(spec.dir, 'exits'), { recursive: true, mode: 0o700 });
  const processSpec = join(spec.dir, 'process.json');
  writeFileSync(processSpec, JSON.stringify({ ...spec.process, terminal: spec.tty }), { mode: 0o600 });
  const argv = [
    '--api-version',
    '1',
    '-c',
    spec.containerId,
    '-u',
    spec.sessionId,
    '-n',
    spec.sessionId,
    '-r',
    host.runtimeBinary,
    '-b',
    spec.dir,
    '-p',
    join(spec.dir, 'pidfile'),
    '--exit-dir',
    join(spec.dir, 'exits'),
    '--persist-dir',
    spec.dir,
    '--conmon-pidfile',
    join(spec.dir, 'conmon.pid'),
    '-l',
    'none:',
    '--full-attach',
    '--socket-dir-path',
    spec.dir,
    ...(spec.tty ? ['-t'] : []),
    ...(spec.stdin ? ['-i'] : []),
    '-e',
    '--exec-attach',
    '--exec-process-spec',
    processSpec,
    // conmon's debug lines would reach the session's stderr stream.
    '--log-level',
    'error',
    ...host.runtimeArgs.flatMap((arg) => ['--runtime-arg', arg]),
  ];
  const channel = openSyncChannel(spec.syncFifo);
  let spawned;
  try {
    spawned = await host.runner.spawn(host.conmonBinary, argv, {
      env: { _OCI_SYNCPIPE: '3', _OCI_STARTPIPE: '4', _OCI_ATTACHPIPE: '5' },
      stdio: ['ignore', 'ignore', 'pipe', channel.conmonEnd, 'pipe', 'pipe'],
      cwd: spec.dir,
    });
  } catch (error) {
    closeSync(channel.reader);
    throw error;
  } finally {
    closeSync(channel.conmonEnd);
  }
  const { child, release } = spawned;
  const startPipe = (child.stdio as unknown as Writable[])[4]!;
  const attachPipe = (child.stdio as unknown as Readable[])[5]!;
  const stderr: Buffer[] = [];
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
  const sync = new SyncMessages(channel.reader);
  const fail = (message: string): never => {
    sync.close();
    killProcessGroup(child.pid);
    const text = message || Buffer.concat(stderr).toString('utf8').trim() || 'exec session failed';
    throw new RuntimeError(classifyRuntimeMessage(text), text, 'exec', -1);
  };
  try {
    startPipe.write(Buffer.from([0]));
    const ready = await firstMessage(attachPipe, host.timeoutMs);
    if (!ready || ready.data < 0) fail(ready?.message ?? 'conmon did not set up the attach socket');
    await attach(spec.dir);
    startPipe.write(Buffer.from([0]));
    const started = await sync.next(host.timeoutMs);
    if (!started) fail('conmon did not report the exec process');
    if (started!.data <= 0) fail(cleanExecMessage(started!.message ?? ''));
    const exited = sync.next(undefined).then((message) => {
      if (message && message.data >= 0) return message.data;
      return readExitFile(spec) ?? -1;
    });
    return { pid: started!.data, conmonPid: readPid(join(spec.dir, 'conmon.pid')), exited };
  } catch (error) {
    sync.close();
    throw error;
  } finally {
    startPipe.destroy();
    attachPipe.destroy();
    child.stderr?.destroy();
    // The monitor lives on as a session; it is counted by the session manager, not as a runtime command.
    release();
  }
}

/** The exit code conmon wrote for a session, e.g. for a runcd that was restarted while it ran. */
export function readExitFile(spec: Pick<ExecSessionSpec, 'dir' | 'containerId'>): number | undefined {
  try {
    const text = readFileSync(join(spec.dir, 'exits', spec.containerId), 'utf8').trim();
    return /^-?\d+$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

function readPid(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function cleanExecMessage(message: string): string {
  // runc's log line as conmon forwards it: time="..." level=error msg="exec failed: ..."
  const quoted = /msg="((?:[^"\\]|\\.)*)"/.exec(message);
  const text = quoted ? quoted[1]!.replace(/\\(.)/g, '$1') : message;
  return text.trim().replace(/^exec failed: /, '');
}

function firstMessage(stream: Readable, timeoutMs: number): Promise<SyncMessage | undefined> {
  return new Promise((resolve) => {
    let buffer = '';
    const finish = (value: SyncMessage | undefined) => {
      clearTimeout(timer);
      stream.removeAllListeners('data');
      resolve(value);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buffer += chunk;
      const message = parseMessage(buffer);
      if (message) finish(message.message);
    });
    stream.on('end', () => finish(undefined));
    stream.on('error', () => finish(undefined));
  });
}

/** conmon's sync channel carries two messages for a session (pid, then exit code); read them in order. */
class SyncMessages {
  private readonly socket: Socket;
  private buffer = '';
  private readonly queued: SyncMessage[] = [];
  private waiting: ((message: SyncMessage | undefined) => void) | undefined;
  private ended = false;

  constructor(reader: number) {
    this.socket = new Socket({ fd: reader, readable: true, writable: false });
    this.socket.setEncoding('utf8');
    this.socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let parsed = parseMessage(this.buffer); parsed; parsed = parseMessage(this.buffer)) {
        this.buffer = this.buffer.slice(parsed.length);
        this.deliver(parsed.message);
      }
    });
    this.socket.on('end', () => this.end());
    this.socket.on('error', () => this.end());
  }

  next(timeoutMs: number | undefined): Promise<SyncMessage | undefined> {
    const queued = this.queued.shift();
    if (queued) return Promise.resolve(queued);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.waiting = undefined;
              resolve(undefined);
            }, timeoutMs);
      this.waiting = (message) => {
        if (timer) clearTimeout(timer);
        this.waiting = undefined;
        resolve(message);
      };
    });
  }

  close(): void {
    this.socket.destroy();
    this.end();
  }

  private deliver(message: SyncMessage): void {
    if (this.waiting) this.waiting(message);
    else this.queued.push(message);
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.waiting?.(undefined);
  }
}

/** conmon ends each message with a newline (a runc message inside may hold braces, never a raw newline). */
function parseMessage(buffer: string): { message: SyncMessage; length: number } | undefined {
  const end = buffer.indexOf('\n');
  if (end === -1) return undefined;
  const line = buffer.slice(0, end);
  try {
    return { message: JSON.parse(line) as SyncMessage, length: end + 1 };
  } catch {
    return { message: { data: -1, message: `unreadable message from conmon: ${line}` }, length: end + 1 };
  }
}
