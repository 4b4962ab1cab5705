import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { NotImplementedError, RuntimeBusyError } from '../errors.js';
import { AttachConnection, resizeTerminal, type OutputStream } from '../runtime/attach-socket.js';
import type { Conmon } from '../runtime/conmon.js';
import type { OciProcess } from '../runtime/oci.js';
import { seqpacketUnavailable } from '../runtime/seqpacket.js';
import type { ExecBody } from '../schemas/container.js';
import type { ContainerService } from './container-service.js';
import { translateRuntimeError } from './runtime-error-translation.js';

/** Sessions open at once; past it a new one is refused with 503 and Retry-After. */
export const MAX_EXEC_SESSIONS = 64;
/** After a client left: SIGHUP (what a terminal's hang-up sends), then SIGKILL if the process is still there. */
export const HANGUP_GRACE_MS = 5_000;

export interface SessionRequest extends Omit<ExecBody, 'timeoutSeconds'> {
  tty: boolean;
  /** The terminal's size at start (a fresh pty is 0x0, and full-screen programs read it first). */
  size?: { rows: number; cols: number } | undefined;
}

export interface SessionHandlers {
  onOutput(stream: OutputStream, data: Buffer): void;
  /** Once, with the process's exit code (-1 if it could not be read). */
  onExit(exitCode: number): void;
}

export interface ExecSession {
  readonly id: string;
  readonly pid: number;
  /** Input for the process; resolves once handed to the kernel. */
  write(data: Buffer): Promise<void>;
  /** End of input: the process reads EOF. */
  endInput(): void;
  resize(rows: number, cols: number): void;
  /** The client is gone: the process gets SIGHUP, and SIGKILL after a grace period (not after a detach). */
  hangUp(): void;
  /**
   * The client leaves on purpose (it typed the detach keys): the process runs on with nobody attached, as
   * Docker's exec does after a detach; its exit code is still reported (`onExit`) and its files go at its end.
   */
  detach(): void;
}

/**
 * Interactive exec sessions (a terminal, or a stdin that stays open): each is its own conmon, which stays the
 * process's parent, so the exit code is recorded whoever is connected. The process is prepared (state, policy,
 * paths) exactly as a plain exec's, and starts only once runcd is attached, so no output is lost and nothing the
 * client typed reaches a process that is not running yet.
 */
export class ExecSessions {
  private open = 0;

  constructor(
    private readonly containers: ContainerService,
    private readonly conmon: Conmon,
    private readonly logger: Logger,
  ) {}

  get count(): number {
    return this.open;
  }

  /** Refuses before anything is prepared when sessions cannot work here or too many are open. */
  checkAvailable(): void {
    const unavailable = seqpacketUnavailable();
    if (unavailable) throw new NotImplementedError('sessions_unavailable', unavailable);
    if (this.open >= MAX_EXEC_SESSIONS) {
      throw new RuntimeBusyError(`too many exec sessions at once (${MAX_EXEC_SESSIONS}); retry shortly`, 1);
    }
  }

  /**
   * One of the sessions' places for another kind of session (an attach to a container), so that every
   * interactive connection counts against the same cap; the function gives it back (once, however often called).
   */
  claim(): () => void {
    this.checkAvailable();
    this.open++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.open--;
    };
  }

  /** The checked process of a session: throws the plain exec's 4xx before anything runs. */
  prepare(containerId: string, request: SessionRequest): Promise<OciProcess> {
    this.checkAvailable();
    const { tty, size, ...exec } = request;
    return this.containers.prepareExec(containerId, exec).then((process) => ({
      ...process,
      terminal: tty,
      ...(tty && size ? { consoleSize: { height: size.rows, width: size.cols } } : {}),
    }));
  }

  async start(containerId: string, process: OciProcess, handlers: SessionHandlers): Promise<ExecSession> {
    this.checkAvailable();
    const sessionId = `${containerId.slice(0, 40)}-x${randomBytes(6).toString('hex')}`;
    this.open++;
    let connection: AttachConnection | undefined;
    let socketClosed!: () => void;
    const closed = new Promise<void>((resolve) => (socketClosed = resolve));
    let started;
    try {
      started = await this.conmon.startExecSession(
        containerId,
        sessionId,
        process,
        { tty: process.terminal === true, stdin: true },
        async (dir) => {
          connection = await AttachConnection.connect(dir, {
            onOutput: (stream, data) => handlers.onOutput(stream, data),
            onClose: () => socketClosed(),
          });
        },
      );
    } catch (error) {
      this.open--;
      connection?.close();
      throw translateRuntimeError(error, containerId, 'exec');
    }
    const { pid, dir } = started;
    const attached = connection!;
    let ended = false;
    let detached = false;
    let killTimer: NodeJS.Timeout | undefined;
    void started.exited.then(async (exitCode) => {
      ended = true;
      this.open--;
      if (killTimer) clearTimeout(killTimer);
      // conmon closes the socket once it has passed on the last output: wait for that (briefly), then the exit.
      let grace: NodeJS.Timeout | undefined;
      await Promise.race([closed, new Promise<void>((resolve) => (grace = setTimeout(resolve, 1_000)))]);
      clearTimeout(grace);
      attached.close();
      this.containers.events.publish('exec', containerId, {
        command: process.args.join(' '),
        exitCode,
      });
      handlers.onExit(exitCode);
    });
    const signal = (name: NodeJS.Signals) => {
      try {
        globalThis.process.kill(pid, name);
      } catch {
        // already gone
      }
    };
    this.logger.info(
      { containerId, session: sessionId, pid, tty: process.terminal === true },
      'exec session started',
    );
    return {
      id: sessionId,
      pid,
      write: (data) => attached.write(data),
      endInput: () => attached.endInput(),
      resize: (rows, cols) => {
        if (!ended && process.terminal) resizeTerminal(dir, rows, cols);
      },
      hangUp: () => {
        if (ended || detached || killTimer) return;
        attached.close();
        signal('SIGHUP');
        killTimer = setTimeout(() => signal('SIGKILL'), HANGUP_GRACE_MS);
        killTimer.unref();
      },
      detach: () => {
        if (ended || detached || killTimer) return;
        detached = true;
        // conmon goes on reading the process's output (and drops it, with nobody attached and no log), so the
        // process is never blocked on a full terminal; without --leave-stdin-open its stdin closes with the
        // socket, which for a pty is not a hang-up: a shell waits on, a running program runs to its end.
        attached.close();
        this.logger.info({ containerId, session: sessionId, pid }, 'exec session detached');
      },
    };
  }
}
