import type { Writable } from 'node:stream';

/**
 * The one way runcd writes a long-lived stream to a client, whatever carries it: a hijacked socket (Docker attach
 * and exec start), a hijacked response (wait), or the PassThrough fastify pipes into a response (logs, events,
 * stats). Every streaming route on both sockets goes through it, so the rules below hold everywhere:
 *
 * - The peer may vanish at any byte: close, reset (the next write fails with EPIPE, the next read with
 *   ECONNRESET), or simply never read. Node's HTTP server takes its own 'error' listener off a socket it hands
 *   over for an upgrade, and nobody listens on a hijacked one, so an 'error' nobody listens for would be an
 *   uncaught exception that ends the daemon (issue 13: Ctrl-C on `docker exec` did exactly that). This listens,
 *   and turns close and error alike into `signal` aborting: that is how the work behind the stream (a log follow,
 *   an exec's pipes, a bus subscription, a `runc events`) learns to stop.
 * - write() honours backpressure like Writable.write(): false means "stop the source until drained()". Sources
 *   that can pause (a file, a process's pipes, the event store) do; nothing else is ever queued, so a reader that
 *   never reads costs the high-water mark and the kernel's socket buffer, not the size of what it does not read.
 * - Once the peer is gone, writes are dropped and end()/destroy() do nothing: none of them ever throws.
 */
export class PeerStream {
  private readonly controller = new AbortController();
  /** Aborts when the peer has gone (closed, reset, failed) or the stream was ended or destroyed here. */
  readonly signal: AbortSignal = this.controller.signal;
  private waiters: Array<() => void> = [];

  constructor(private readonly target: Writable) {
    const gone = () => this.gone();
    // The error itself says only how the peer left (EPIPE, ECONNRESET); what matters is that it did.
    target.on('error', gone);
    target.once('close', gone);
    target.on('drain', () => this.wake());
    if (target.destroyed) gone();
  }

  get closed(): boolean {
    return this.signal.aborted;
  }

  /** The peer has not yet taken what is queued (up to the high-water mark): a source should wait for drained(). */
  get behind(): boolean {
    return this.target.writableNeedDrain;
  }

  /**
   * A signal that aborts when the peer goes or when `other` (a server closing) aborts. It holds its listener on
   * the long-lived `other` only while the peer is there, so streams that come and go leave nothing behind on it.
   */
  orWhen(other: AbortSignal): AbortSignal {
    const combined = new AbortController();
    const abort = () => combined.abort();
    if (other.aborted || this.closed) {
      abort();
      return combined.signal;
    }
    other.addEventListener('abort', abort, { once: true });
    this.signal.addEventListener(
      'abort',
      () => {
        other.removeEventListener('abort', abort);
        abort();
      },
      { once: true },
    );
    return combined.signal;
  }

  /** Bytes written but not yet taken by the peer: what a source that cannot pause must bound. */
  get queued(): number {
    return this.target.writableLength;
  }

  /** False when the source should pause until drained() (always false once the peer is gone). */
  write(chunk: Buffer | string): boolean {
    if (this.closed || this.target.writableEnded) return false;
    try {
      return this.target.write(chunk);
    } catch {
      // A write on a socket torn down under us; the peer is gone either way.
      this.destroy();
      return false;
    }
  }

  /** Resolves once the peer has taken what is queued (or has gone); never rejects. */
  drained(): Promise<void> {
    if (this.closed || !this.target.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Ends the stream after what is queued; safe when the peer has already gone. */
  end(chunk?: Buffer | string): void {
    if (this.closed || this.target.writableEnded) return;
    try {
      if (chunk === undefined) this.target.end();
      else this.target.end(chunk);
    } catch {
      this.destroy();
    }
  }

  /** Cuts the stream at once (nothing more is sent). */
  destroy(): void {
    if (!this.target.destroyed) this.target.destroy();
    this.gone();
  }

  private gone(): void {
    if (!this.controller.signal.aborted) this.controller.abort();
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}
