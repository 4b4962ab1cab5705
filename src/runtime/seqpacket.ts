import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';

/**
 * A SOCK_SEQPACKET client, which Node has no API for: conmon's attach sockets are of that type. It drives the
 * native binding of node-unix-socket's Linux x64 (glibc) build directly, an optional dependency: the binding's
 * JavaScript wrapper pulls in per-platform packages this project's registry does not have, so `npm ci` would
 * refuse the lock file on a fresh machine. Without the binding (another platform, or the package missing),
 * `seqpacketUnavailable()` says why, and only interactive sessions are refused.
 *
 * The binding reports through an emitter it is given: `_connect`, `_data` (one packet), `end` (the peer closed),
 * `_shutdown` (our half-close is done) and `_error`.
 */

interface NativeSocket {
  init(self: NativeSocket): void;
  connect(path: string): void;
  startRecv(): void;
  write(buffer: Buffer, offset: number, length: number, callback?: () => void): void;
  shutdownWhenFlushed(): void;
  close(): void;
}

interface Binding {
  SeqpacketSocketWrap: new (emitter: EventEmitter, fd?: number) => NativeSocket;
}

const BINDING_PACKAGE = 'node-unix-socket-linux-x64-gnu/node-unix-socket.linux-x64-gnu.node';

let binding: Binding | undefined;
let loadError: string | undefined;
try {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    throw new Error(`${process.platform}/${process.arch}`);
  binding = createRequire(import.meta.url)(BINDING_PACKAGE) as Binding;
} catch (error) {
  loadError = `the SOCK_SEQPACKET binding (${BINDING_PACKAGE}) cannot be loaded: ${(error as Error).message.split('\n')[0]}`;
}

/** Why interactive sessions cannot work here, or undefined when they can. */
export function seqpacketUnavailable(): string | undefined {
  return loadError;
}

/** Events: `data` (Buffer, one packet), `end` (the peer closed), `error`, `close` (once, after either). */
export class SeqpacketClient extends EventEmitter {
  private readonly native: NativeSocket;
  private destroyed = false;

  constructor() {
    super();
    if (!binding) throw new Error(loadError);
    const events = new EventEmitter();
    // The binding calls emit unbound.
    events.emit = events.emit.bind(events);
    events.on('_data', (packet: Buffer) => {
      if (!this.destroyed) this.emit('data', packet);
    });
    events.on('end', () => {
      this.emit('end');
      this.destroy();
    });
    events.on('_error', (error: Error) =>
      process.nextTick(() => {
        if (this.listenerCount('error') > 0) this.emit('error', error);
        this.destroy();
      }),
    );
    events.on('_connect', () => {
      this.native.startRecv();
      this.emit('connect');
    });
    events.on('_shutdown', () => this.emit('shutdown'));
    this.native = new binding.SeqpacketSocketWrap(events);
    this.native.init(this.native);
  }

  connect(path: string): void {
    this.native.connect(path);
  }

  /** One packet; `callback` once it reached the kernel. Ignored after destroy. */
  write(buffer: Buffer, offset: number, length: number, callback?: () => void): void {
    if (this.destroyed) return callback?.();
    this.native.write(buffer, offset, length, callback);
  }

  /** Half-close once written packets are flushed: the peer reads end-of-file. */
  end(): void {
    if (!this.destroyed) this.native.shutdownWhenFlushed();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    // Not closed here: destroy() is often called from a 'data' listener (a consumer that falls behind hangs its
    // session up), i.e. inside the binding's receive loop, which goes on emitting the packets it has read and
    // panics (an abort of the whole process: "emitter already unreferenced") if the socket was closed under it.
    // Packets emitted meanwhile are dropped above.
    setImmediate(() => this.native.close());
    this.emit('close');
  }
}
