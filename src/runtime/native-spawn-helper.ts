import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { HelperChannel, HelperChannelEvents, HelperOutgoing } from './spawn-helper.js';
import {
  AnswerDecoder,
  encodeKill,
  encodeRemove,
  encodeRun,
  MAX_REQUEST_BODY_BYTES,
  NATIVE_HELPER_HELLO,
} from './spawn-helper-protocol.js';

/**
 * Where `npm run build` puts the compiled helper (scripts/build-spawn-helper.js): dist/native/, beside the
 * compiled JavaScript, so a checkout, an installed package and a `npm test` (which rebuilds dist) each find the
 * binary built from their own source.
 */
export const NATIVE_HELPER_PATH = fileURLToPath(new URL('../../native/runcd-spawn-helper', import.meta.url));
/** The hello is the helper's first write; a binary that says nothing for this long is not the helper. */
const HELLO_TIMEOUT_MS = 5_000;

type HelperChild = ChildProcessByStdio<Writable, Readable, null>;

/**
 * The compiled helper (native/spawn-helper/spawn-helper.c) behind the same channel as the Node one. Until its
 * hello arrives the requests wait here; if it never comes (no binary, a binary that fails, a different protocol),
 * `unusable` hands them back so that SpawnHelper can send them to the Node helper instead.
 */
export class NativeHelperChannel implements HelperChannel {
  private readonly child: HelperChild;
  private readonly decoder = new AnswerDecoder();
  /** Requests waiting for the hello; undefined once it came. */
  private waiting: { message: HelperOutgoing; failed: (error: Error) => void }[] | undefined = [];
  private helloTimer: NodeJS.Timeout | undefined;
  private ended = false;

  /** Throws if the binary is not there (the caller falls back without starting anything). */
  constructor(
    binary: string,
    private readonly events: HelperChannelEvents & {
      unusable: (
        reason: string,
        unsent: { message: HelperOutgoing; failed: (error: Error) => void }[],
      ) => void;
    },
  ) {
    if (!existsSync(binary))
      throw new Error(`${binary} is not there (not built: see scripts/build-spawn-helper.js)`);
    this.child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'], env: {} });
    this.child.unref();
    this.child.stdin.on('error', () => undefined);
    this.child.stdout.on('data', (chunk: Buffer) => this.receive(chunk));
    this.child.on('error', (error) => this.end(`it could not be started: ${error.message}`));
    this.child.on('close', (code, signal) =>
      this.end(`the spawn helper exited (${signal ?? `code ${code}`})`),
    );
    this.helloTimer = setTimeout(() => {
      this.child.kill('SIGKILL');
      this.end(`it sent no hello within ${HELLO_TIMEOUT_MS} ms`);
    }, HELLO_TIMEOUT_MS);
    this.helloTimer.unref();
    this.unref();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  send(message: HelperOutgoing, failed: (error: Error) => void): void {
    if (this.waiting) {
      this.waiting.push({ message, failed });
      return;
    }
    let frame: Buffer;
    if (message.type === 'run') frame = encodeRun(message);
    else if (message.type === 'remove') frame = encodeRemove(message);
    else frame = encodeKill(message.id);
    if (frame.length - 12 > MAX_REQUEST_BODY_BYTES) {
      failed(new Error(`the request is too large for the spawn helper (${frame.length} bytes)`));
      return;
    }
    this.child.stdin.write(frame, (error) => {
      if (error) failed(error);
    });
  }

  // Both pipe ends are net.Sockets; the child's own handle is unref'd once, at start.
  ref(): void {
    (this.child.stdout as Socket).ref();
  }

  unref(): void {
    (this.child.stdout as Socket).unref();
    (this.child.stdin as Socket).unref();
  }

  /** Closing its stdin is what ends the helper: it exits at EOF, leaving what it started running. */
  close(): void {
    this.child.stdin.end();
  }

  private receive(chunk: Buffer): void {
    let answers;
    try {
      answers = this.decoder.push(chunk);
    } catch (error) {
      this.child.kill('SIGKILL');
      this.end((error as Error).message);
      return;
    }
    for (const answer of answers) {
      if (answer.type === 'hello') {
        if (!this.waiting) continue;
        if (answer.version !== NATIVE_HELPER_HELLO) {
          this.child.kill('SIGKILL');
          this.end(`it speaks ${JSON.stringify(answer.version)}, not ${NATIVE_HELPER_HELLO}`);
          return;
        }
        clearTimeout(this.helloTimer);
        const waiting = this.waiting;
        this.waiting = undefined;
        for (const { message, failed } of waiting) this.send(message, failed);
        continue;
      }
      this.events.message(answer);
    }
  }

  private end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.helloTimer);
    if (this.waiting) this.events.unusable(reason, this.waiting);
    else this.events.lost(new Error(reason));
  }
}
