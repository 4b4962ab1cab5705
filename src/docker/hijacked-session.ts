import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Duplex } from 'node:stream';
import { DetachKeyScanner } from '../detach-keys.js';
import { PeerStream } from '../peer-stream.js';
import type { OutputStream } from '../runtime/attach-socket.js';
import { frame, openRawStream } from './docker-stream.js';
import { endRawStream } from './handlers/exec-support.js';
import { takeUpgradeInput, type UpgradeInput } from './upgrade-requests.js';

/**
 * The bridge between a hijacked Docker connection (`POST /exec/ID/start`, and later `/containers/ID/attach`) and
 * an interactive process runcd holds through conmon's attach socket. Docker's wire format, as the docker CLI 28
 * and dockerode speak it:
 * - after `101 UPGRADED` the connection is a byte stream both ways. Client → runcd: raw stdin, then a half-close
 *   when the client's stdin ends (the CLI half-closes at once when it has no stdin to send). runcd → client: the
 *   output raw (`application/vnd.docker.raw-stream`) with a terminal, Docker's 8-byte-header frames
 *   (`application/vnd.docker.multiplexed-stream`) without one.
 * - the exit code is not on the stream: the client asks for it once the stream has ended (GET /exec/ID/json).
 *
 * What a client that misbehaves costs: its early input is held up to a bound (upgrade-requests.ts); input is read
 * only as fast as conmon takes it; output cannot be slowed down (conmon does not wait for its attach clients), so
 * a client with more than MAX_UNREAD_OUTPUT_BYTES unread is cut off, which counts as leaving.
 */

/** Output held for a client that does not read, before it is treated as gone (as runcd's WebSocket session). */
export const MAX_UNREAD_OUTPUT_BYTES = 8 * 1024 * 1024;
/** Input handed to conmon but not yet in the kernel, past which the client's socket is not read for a while. */
const MAX_INPUT_IN_FLIGHT = 1024 * 1024;

/** What a hijacked connection drives: an exec session today, a container's attach later. */
export interface InteractiveProcess {
  /** Input for the process; resolves once handed to the kernel. */
  write(data: Buffer): Promise<void>;
  /** End of input: the process reads EOF. */
  endInput(): void;
  /** The client left: what that means is the process's business (an exec session is hung up). */
  hangUp(): void;
  /** The client typed the detach keys: it leaves, and the process runs on. */
  detach(): void;
}

export interface HijackOptions {
  /** Raw output (a terminal: Docker's raw stream) or Docker's multiplexed frames. */
  rawStream: boolean;
  /** The streams the client attached to; the others are dropped. */
  stdout: boolean;
  stderr: boolean;
  /** The client's bytes are the process's stdin. */
  stdin: boolean;
  /**
   * The client's half-close means it left, not that stdin ended: so for a terminal, whose input never ends (^D
   * is a byte); the docker CLI half-closes only when its own stdin ends, and a closed client looks the same.
   */
  halfCloseIsLeaving: boolean;
  /**
   * The detach sequence to watch the input for (a terminal's: Docker scans only a TTY's stdin, so a pipe's bytes
   * pass untouched). Typing it ends the stream and leaves the process running.
   */
  detachKeys?: Uint8Array | undefined;
}

export class HijackedSession {
  private process: InteractiveProcess | undefined;
  private ended = false;
  private inFlight = 0;
  private readingPaused = false;
  private readonly scanner: DetachKeyScanner | undefined;

  private constructor(
    private readonly peer: PeerStream,
    private readonly socket: Duplex,
    private readonly input: UpgradeInput | undefined,
    private readonly options: HijackOptions,
  ) {
    this.scanner = options.detachKeys ? new DetachKeyScanner(options.detachKeys) : undefined;
    peer.signal.addEventListener('abort', () => this.left(), { once: true });
  }

  /** Takes the connection over and answers `101 UPGRADED` (or a 200 whose body runs until the end). */
  static open(request: FastifyRequest, reply: FastifyReply, options: HijackOptions): HijackedSession {
    const upgrade = /\bupgrade\b/i.test(request.headers.connection ?? '');
    const socket = request.raw.socket as Duplex;
    // Taken before anything is written: from here on the client's bytes are this session's.
    const input = options.stdin ? takeUpgradeInput(socket) : undefined;
    reply.hijack();
    const peer = new PeerStream(socket);
    openRawStream(
      peer,
      upgrade,
      options.rawStream ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream',
    );
    return new HijackedSession(peer, socket, input, options);
  }

  /** The client is gone (closed, reset, cut off for not reading). */
  get gone(): boolean {
    return this.peer.closed;
  }

  /** One packet of the process's output. */
  output(stream: OutputStream, data: Buffer): void {
    if (this.peer.closed || this.ended) return;
    if (!(stream === 'stdout' ? this.options.stdout : this.options.stderr)) return;
    if (this.peer.queued > MAX_UNREAD_OUTPUT_BYTES) {
      // Cutting the connection aborts the peer's signal: the process is hung up as for a client that left.
      this.peer.destroy();
      return;
    }
    this.peer.write(this.options.rawStream ? data : frame(stream, data));
  }

  /** The process runs: the client's input (held until now) goes to it from here on. */
  attach(process: InteractiveProcess): void {
    this.process = process;
    if (this.peer.closed) {
      process.hangUp();
      return;
    }
    const input = this.input;
    if (!this.options.stdin || !input) {
      // No stdin from this client: the process reads EOF at once (a terminal has no EOF: there it does nothing).
      process.endInput();
      return;
    }
    for (const chunk of input.early.splice(0)) this.forward(chunk);
    if (input.ended || this.socket.readableEnded) {
      this.inputEnded();
      return;
    }
    this.socket.on('data', (chunk: Buffer) => this.forward(chunk));
    this.socket.once('end', () => this.inputEnded());
    this.socket.resume();
  }

  /** The process could not run: Docker's daemon writes the reason on the stream, and the stream ends. */
  fail(message: string): void {
    this.output('stderr', Buffer.from(this.options.rawStream ? `${message}\r\n` : `${message}\n`));
    this.end();
  }

  /** The process ended and its output was passed on: the stream ends after it. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    endRawStream(this.peer);
  }

  private forward(received: Buffer): void {
    const process = this.process;
    if (!process || this.ended) return;
    const chunk = this.scanner ? this.scanner.scan(received) : received;
    if (this.scanner?.detached) {
      // What came before the sequence goes first; then the stream ends (the CLI then asks for the exit code,
      // which reads as running), and ending it first makes the peer's close a non-event for the process.
      void process.write(chunk);
      this.end();
      process.detach();
      return;
    }
    if (chunk.length === 0) return;
    this.inFlight += chunk.length;
    if (this.inFlight > MAX_INPUT_IN_FLIGHT && !this.readingPaused) {
      this.readingPaused = true;
      this.socket.pause();
    }
    void process.write(chunk).then(() => {
      this.inFlight -= chunk.length;
      if (this.readingPaused && this.inFlight <= MAX_INPUT_IN_FLIGHT / 2) {
        this.readingPaused = false;
        this.socket.resume();
      }
    });
  }

  private inputEnded(): void {
    if (this.options.halfCloseIsLeaving) this.peer.destroy();
    else this.process?.endInput();
  }

  private left(): void {
    if (!this.ended) this.process?.hangUp();
  }
}
