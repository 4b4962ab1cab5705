import type { Logger } from 'pino';
import { ConflictError } from '../errors.js';
import { AttachConnection, type OutputStream } from '../runtime/attach-socket.js';
import type { Conmon } from '../runtime/conmon.js';
import { RuntimeError } from '../runtime/runc.js';
import type { ContainerService } from './container-service.js';
import type { ExecSessions } from './exec-sessions.js';
import { translateRuntimeError } from './runtime-error-translation.js';

/** Input typed into a created container waits for its start, up to this much; past it the attach is refused. */
export const MAX_HELD_INPUT_BYTES = 1024 * 1024;
/** After the attach socket closed: how long the container's exit code is waited for before ending without it. */
const EXIT_WAIT_MS = 5_000;
/** A detach closes the socket once the input before it reached conmon, or after this long. */
const DETACH_FLUSH_MS = 1_000;

export interface AttachHandlers {
  onOutput(stream: OutputStream, data: Buffer): void;
  /** Once, when input reaches the process: at once for a running container, at its start for a created one. */
  onStarted(pid: number): void;
  /** Once, when the container's process ended (its conmon closed the socket), with the exit code if known. */
  onEnd(exitCode: number | null): void;
}

export interface Attachment {
  /** The process has a terminal (one output stream, resizable, keystrokes echoed by the pty). */
  readonly tty: boolean;
  /** The process reads the clients' input (a terminal container's stdin); without it input is dropped. */
  readonly stdin: boolean;
  /** Input for the process; false when it cannot be held any more (the container has not started yet). */
  write(data: Buffer): boolean;
  /** This client's input ends (conmon keeps the container's stdin open for the next attach). */
  endInput(): void;
  resize(rows: number, cols: number): void;
  /** The client leaves; the container goes on, and can be attached to again. */
  detach(): void;
}

/**
 * Attaching to a container's own process through conmon's attach socket: its output as it comes, input for its
 * stdin, resizes of its terminal. conmon holds the pty and the socket, so an attachment can end and begin again
 * at will, also across a restart or a SIGKILL of runcd; leaving never touches the container (unlike an exec
 * session, whose process belongs to its client).
 *
 * Nothing typed reaches a created container before its start succeeded: a ^C in the pty of a created container
 * kills runc's init (SIGINT from the terminal), so input waits until the container runs.
 */
export class ContainerAttach {
  constructor(
    private readonly containers: ContainerService,
    private readonly conmon: Pick<Conmon, 'attachDir' | 'stdioOf' | 'resizeTerminal'>,
    private readonly sessions: Pick<ExecSessions, 'checkAvailable' | 'claim'>,
    private readonly logger: Logger,
  ) {}

  /** Everything that can refuse an attach, before a client's connection is upgraded. */
  check(id: string): void {
    this.sessions.checkAvailable();
    this.containers.checkAttach(id);
  }

  async attach(id: string, handlers: AttachHandlers): Promise<Attachment> {
    this.containers.checkAttach(id);
    const release = this.sessions.claim();
    const { terminal: tty, stdin } = this.conmon.stdioOf(id);
    let held: Buffer[] | undefined = [];
    let heldBytes = 0;
    let heldEnd = false;
    let left = false;
    /** The last input handed to the socket: a detach waits for it, so a line typed just before is not lost. */
    let lastWrite: Promise<void> = Promise.resolve();
    let unsubscribe: (() => void) | undefined;
    let connection: AttachConnection;
    const finish = () => {
      unsubscribe?.();
      unsubscribe = undefined;
      release();
    };
    try {
      connection = await AttachConnection.connect(this.conmon.attachDir(id), {
        onOutput: (stream, data) => {
          if (!left) handlers.onOutput(stream, data);
        },
        onClose: () => {
          finish();
          if (!left) void this.exitCodeOf(id).then((exitCode) => handlers.onEnd(exitCode));
        },
      });
    } catch (error) {
      finish();
      if (error instanceof RuntimeError && error.kind === 'not_found') {
        throw new ConflictError(
          'container_not_running',
          `container "${id}" has no attach socket: its process ended, or it was not started by runcd`,
          id,
        );
      }
      throw translateRuntimeError(error, id, 'attach');
    }
    const startInput = () => {
      if (!held || left) return;
      const waiting = held;
      held = undefined;
      unsubscribe?.();
      unsubscribe = undefined;
      for (const chunk of waiting) lastWrite = connection.write(chunk);
      if (heldEnd) connection.endInput();
      handlers.onStarted(this.containers.has(id) ? this.containers.get(id).pid : 0);
    };
    // Subscribed before the status is read, so a start in between is not missed.
    unsubscribe = this.containers.events.subscribe((event) => {
      if (event.id === id && event.type === 'start') startInput();
    });
    const status = this.containers.get(id).status;
    if (status === 'running' || status === 'paused') startInput();
    this.logger.info({ containerId: id, tty, stdin, status }, 'attached');
    return {
      tty,
      stdin,
      write: (data) => {
        if (!stdin || left) return true;
        if (!held) {
          lastWrite = connection.write(data);
          return true;
        }
        heldBytes += data.length;
        if (heldBytes > MAX_HELD_INPUT_BYTES) return false;
        held.push(data);
        return true;
      },
      endInput: () => {
        if (held) heldEnd = true;
        else connection.endInput();
      },
      resize: (rows, cols) => {
        if (tty && !left) this.conmon.resizeTerminal(id, rows, cols);
      },
      detach: () => {
        if (left) return;
        left = true;
        held = undefined;
        finish();
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, DETACH_FLUSH_MS)));
        void Promise.race([lastWrite, late]).then(() => {
          clearTimeout(timer);
          connection.close();
        });
      },
    };
  }

  /** Whether the container runs on a terminal (its config asks for one), whatever its state. */
  hasTerminal(id: string): boolean {
    this.containers.get(id);
    try {
      return this.conmon.stdioOf(id).terminal;
    } catch {
      return false;
    }
  }

  /**
   * Resolves at the container's next start (true), or false when `signal` aborts or the container is deleted
   * first: `docker start -ai` attaches to a stopped container, then starts it.
   */
  nextStart(id: string, signal: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (started: boolean) => {
        unsubscribe();
        signal.removeEventListener('abort', aborted);
        resolve(started);
      };
      const aborted = () => done(false);
      const unsubscribe = this.containers.events.subscribe((event) => {
        if (event.id !== id) return;
        if (event.type === 'start') done(true);
        else if (event.type === 'delete') done(false);
      });
      if (signal.aborted) done(false);
      else signal.addEventListener('abort', aborted, { once: true });
    });
  }

  /**
   * A new size for a terminal container's pty without an attachment (Docker's POST /containers/ID/resize, sent
   * by the CLI after its start). Refused for a container without a terminal or one whose process ended.
   */
  resize(id: string, rows: number, cols: number): void {
    this.containers.checkAttach(id);
    if (!this.conmon.stdioOf(id).terminal) {
      throw new ConflictError(
        'container_no_terminal',
        `container "${id}" has no terminal to resize (created without process.terminal / docker -t)`,
        id,
      );
    }
    this.conmon.resizeTerminal(id, rows, cols);
  }

  /** The exit code of a container whose attach socket closed: conmon reports it a moment after. */
  private async exitCodeOf(id: string): Promise<number | null> {
    let waiter: ReturnType<ContainerService['waitFor']> | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      waiter = this.containers.waitFor(id, 'stopped');
      const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), EXIT_WAIT_MS)));
      const result = await Promise.race([waiter.result, late]);
      return result?.exitCode ?? null;
    } catch {
      // deleted without a trace meanwhile
      return null;
    } finally {
      clearTimeout(timer);
      waiter?.cancel();
    }
  }
}
