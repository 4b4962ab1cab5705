import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { SeqpacketClient, seqpacketUnavailable } from './seqpacket.js';
import { RuntimeError } from './runc.js';

/**
 * conmon's attach socket (SOCK_SEQPACKET, created by conmon for every container and every exec session it
 * monitors). What conmon does with it, as measured against conmon 2.1.6:
 * - conmon → client: one packet per read() of the process's output, byte 0 the stream (2 stdout, 3 stderr),
 *   at most 8192 bytes of payload. Every connected client gets every packet; output while nobody is connected
 *   goes only to the log.
 * - client → conmon: raw stdin bytes without a prefix. conmon reads a packet with read(fd, buf, 32768): a larger
 *   packet is silently truncated, so input is written in packets of at most 32 KiB.
 * - a half-close (shutdown SHUT_WR) closes the process's stdin, unless conmon runs with --leave-stdin-open.
 * The socket lives in a directory whose path may exceed sun_path's 108 bytes: it is reached through an open
 * descriptor of that directory (/proc/self/fd/N/attach), as conmon itself binds it.
 *
 * The SOCK_SEQPACKET client (seqpacket.ts) cannot pause reading, so flow control of the output is left to the
 * caller (see `onOutput`).
 */

export type OutputStream = 'stdout' | 'stderr';

/** conmon reads each input packet into a 32 KiB buffer: larger packets lose their tail. */
export const MAX_INPUT_PACKET = 32 * 1024;

const STREAM_IDS: Readonly<Record<number, OutputStream>> = { 2: 'stdout', 3: 'stderr' };

export interface AttachHandlers {
  /** One packet of output; runcd cannot slow conmon down, so a consumer that falls behind must drop or detach. */
  onOutput(stream: OutputStream, data: Buffer): void;
  /** conmon closed the socket: the process ended (or conmon did). Called once, also after an error. */
  onClose(error?: Error): void;
}

export class AttachConnection {
  private closed = false;
  private inputEnded = false;
  private notified = false;

  private constructor(private readonly socket: SeqpacketClient) {}

  /** Connects to `<dir>/attach`; a missing socket (the process is gone, or was never attached) is not_found. */
  static connect(dir: string, handlers: AttachHandlers): Promise<AttachConnection> {
    return new Promise((resolve, reject) => {
      const unavailable = seqpacketUnavailable();
      if (unavailable) {
        reject(new RuntimeError('failed', unavailable, 'attach', -1));
        return;
      }
      let dirFd: number;
      try {
        dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
      } catch (error) {
        reject(notFound(dir, error));
        return;
      }
      const socket = new SeqpacketClient();
      const connection = new AttachConnection(socket);
      let settled = false;
      const closeDir = () => {
        try {
          closeSync(dirFd);
        } catch {
          // already closed
        }
      };
      socket.on('data', (packet: Buffer) => {
        const stream = STREAM_IDS[packet[0] ?? 0];
        if (stream && packet.length > 1) handlers.onOutput(stream, packet.subarray(1));
      });
      socket.on('error', (error: Error) => {
        if (!settled) {
          settled = true;
          closeDir();
          connection.closed = true;
          reject(notFound(dir, error));
          return;
        }
        connection.finish(handlers, error);
      });
      socket.on('end', () => connection.finish(handlers));
      socket.on('close', () => connection.finish(handlers));
      try {
        socket.once('connect', () => {
          settled = true;
          closeDir();
          resolve(connection);
        });
        socket.connect(`/proc/self/fd/${dirFd}/attach`);
      } catch (error) {
        settled = true;
        closeDir();
        connection.closed = true;
        reject(notFound(dir, error));
      }
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Writes stdin bytes in packets conmon reads whole; resolves once the last one reached the kernel. */
  write(data: Buffer): Promise<void> {
    if (this.closed || this.inputEnded || data.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      for (let offset = 0; offset < data.length; offset += MAX_INPUT_PACKET) {
        const length = Math.min(MAX_INPUT_PACKET, data.length - offset);
        const last = offset + length >= data.length;
        try {
          this.socket.write(data, offset, length, last ? () => resolve() : undefined);
        } catch {
          // The socket went away under the write: the process is gone, nothing is left to deliver to.
          resolve();
          return;
        }
      }
    });
  }

  /** End of input: the process reads EOF on stdin (unless conmon keeps it open for later attaches). */
  endInput(): void {
    if (this.closed || this.inputEnded) return;
    this.inputEnded = true;
    try {
      this.socket.end();
    } catch {
      // end() on a socket the peer already closed throws synchronously in node-unix-socket.
    }
  }

  /** Leaves the session without touching the process (a detach). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.socket.destroy();
    } catch {
      // already destroyed
    }
  }

  private finish(handlers: AttachHandlers, error?: Error): void {
    this.close();
    if (this.notified) return;
    this.notified = true;
    handlers.onClose(error);
  }
}

/**
 * A terminal's new size, through conmon's control FIFO (`1 ROWS COLS\n`; type 2 would reopen logs). Opened
 * non-blocking: a FIFO without a reader (conmon gone) blocks an open for writing forever, non-blocking it is ENXIO.
 */
export function resizeTerminal(dir: string, rows: number, cols: number): void {
  let fd: number;
  try {
    fd = openSync(`${dir}/ctl`, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw notFound(dir, error);
  }
  try {
    writeSync(fd, `1 ${rows} ${cols}\n`);
  } finally {
    closeSync(fd);
  }
}

function notFound(dir: string, error: unknown): RuntimeError {
  const reason = error instanceof Error ? error.message : String(error);
  return new RuntimeError('not_found', `no attach socket in ${dir}: ${reason}`, 'attach', -1);
}
