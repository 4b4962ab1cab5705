import { closeSync, constants, mkdirSync, openSync, readdirSync, readSync, renameSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import type { ProcessRunner } from './process-runner.js';

/**
 * conmon's sync channel (`_OCI_SYNCPIPE`) as a FIFO in the container's directory instead of an anonymous pipe.
 *
 * With a pipe whose only reader is runcd, a runcd killed during `runc create` makes conmon's write of the init
 * pid fail with EPIPE, and conmon exits (2.1.6: `write_sync_fd` → `pexit`), leaving the container without the
 * monitor that would record its exit. So conmon gets, as fd 3, the FIFO opened O_RDWR: conmon itself then holds
 * a read end, its write can never fail for want of a reader, and the message stays in the FIFO for as long as
 * conmon lives, where a restarted runcd finds it. runcd reads from a separate O_RDONLY|O_NONBLOCK descriptor
 * (through libuv's event loop, never a thread-pool read that could block) and closes its copy of the O_RDWR one
 * once conmon has it, so conmon is the only writer left: when conmon exits, runcd's reader sees EOF.
 */

export interface SyncMessage {
  data: number;
  message?: string;
}

/** The descriptors of one create: `conmonEnd` goes to conmon as fd 3, `reader` stays with runcd. */
export interface SyncChannel {
  conmonEnd: number;
  reader: number;
}

const REFILL_BATCH = 32;
const LOW_WATER = 8;

/**
 * Node has no mkfifo(3), so FIFOs come from `mkfifo`: 32 per spawn into a pool, renamed into a container's
 * directory when its first create needs one (a restart reuses the container's own). One spawn per 32 containers
 * instead of one per create keeps the create path as fast as it was.
 */
export class SyncFifoPool {
  private readonly spare: string[] = [];
  private refill: Promise<void> | undefined;
  private sequence = 0;

  constructor(
    private readonly runner: ProcessRunner,
    private readonly dir: string,
  ) {}

  /** Takes over the FIFOs a previous runcd left and fills the pool, so creates after startup spawn no mkfifo. */
  async prepare(): Promise<void> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(this.dir)) this.spare.push(join(this.dir, name));
    if (this.spare.length < LOW_WATER) await this.startRefill();
  }

  /** Moves a fresh FIFO to `path` (same filesystem: the state dir). */
  async place(path: string): Promise<void> {
    while (this.spare.length === 0) await this.startRefill();
    renameSync(this.spare.pop()!, path);
    if (this.spare.length < LOW_WATER) void this.startRefill().catch(() => undefined);
  }

  private startRefill(): Promise<void> {
    this.refill ??= (async () => {
      const stamp = `${process.pid}-${Date.now()}`;
      const paths = Array.from({ length: REFILL_BATCH }, () => join(this.dir, `${stamp}-${this.sequence++}`));
      try {
        const result = await this.runner.run('mkfifo', ['-m', '0600', ...paths], { timeoutMs: 10_000 });
        if (result.exitCode !== 0) throw new Error(`mkfifo failed: ${result.stderr.trim()}`);
        this.spare.push(...paths);
      } finally {
        this.refill = undefined;
      }
    })();
    return this.refill;
  }
}

/**
 * Opens both ends for a create. O_RDWR first: a FIFO opened for reading with no writer would read as EOF at once.
 * Anything already in the FIFO is a stale message of an earlier instance and is drained before conmon starts.
 */
export function openSyncChannel(path: string): SyncChannel {
  const conmonEnd = openSync(path, constants.O_RDWR);
  let reader: number;
  try {
    reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    closeSync(conmonEnd);
    throw error;
  }
  while (readAvailable(reader) !== '') {
    // drain
  }
  return { conmonEnd, reader };
}

/**
 * Waits for conmon's message on `reader` (which it takes over and closes): the message, a negative `data` when
 * conmon closed the channel with something unreadable, or undefined on EOF without a message or a timeout.
 */
export function readSyncMessage(reader: number, timeoutMs: number): Promise<SyncMessage | undefined> {
  const socket = new Socket({ fd: reader, readable: true, writable: false });
  return new Promise<SyncMessage | undefined>((resolve) => {
    let buffer = '';
    const finish = (value: SyncMessage | undefined) => {
      clearTimeout(timer);
      socket.removeAllListeners('data');
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const message = parseSyncMessage(buffer);
      if (message) finish(message);
    });
    socket.on('end', () => finish(buffer ? { data: -1, message: buffer } : undefined));
    socket.on('error', () => finish(undefined));
  });
}

/** A reader on an existing FIFO (a restarted runcd's), or undefined when there is none. */
export function openSyncReader(path: string): number | undefined {
  try {
    return openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
}

function parseSyncMessage(buffer: string): SyncMessage | undefined {
  const end = buffer.indexOf('}');
  if (end === -1) return undefined;
  try {
    return JSON.parse(buffer.slice(0, end + 1)) as SyncMessage;
  } catch {
    return { data: -1, message: `unreadable message from conmon: ${buffer}` };
  }
}

/** One non-blocking read: '' when nothing is there (EAGAIN) or no writer is left (EOF). */
function readAvailable(fd: number): string {
  const buffer = Buffer.alloc(4096);
  try {
    const length = readSync(fd, buffer, 0, buffer.length, null);
    return buffer.toString('utf8', 0, length);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return '';
    throw error;
  }
}
