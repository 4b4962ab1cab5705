import { randomBytes } from 'node:crypto';
import type { ExecBody } from '../schemas/container.js';

/** A terminal's size, Docker's `ConsoleSize: [height, width]`. */
export interface TerminalSize {
  rows: number;
  cols: number;
}

/** What `POST /containers/ID/exec` asked for besides the process: a terminal, and which streams to attach. */
export interface ExecAttachment {
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  detachKeys: string;
}

export interface ExecSession {
  id: string;
  containerId: string;
  request: ExecBody;
  attachment: ExecAttachment;
  running: boolean;
  started: boolean;
  exitCode: number | null;
  pid: number;
  /** The terminal's size: from create or start, then from each resize (also one sent before the process ran). */
  size: TerminalSize | undefined;
  /** Resizes the running process's terminal; set while an interactive session runs. */
  resize: ((size: TerminalSize) => void) | undefined;
}

const NO_ATTACHMENT: ExecAttachment = {
  tty: false,
  stdin: false,
  stdout: true,
  stderr: true,
  detachKeys: '',
};

/** Docker's exec is two calls (create, then start) plus an inspect for the exit code; this holds the state between. */
export class ExecSessions {
  private readonly sessions = new Map<string, ExecSession>();
  /** Finished sessions are kept this long for `GET /exec/{id}/json`, then forgotten; so are ones never started. */
  private static readonly RETENTION_MS = 10 * 60_000;

  create(
    containerId: string,
    request: ExecBody,
    attachment: ExecAttachment = NO_ATTACHMENT,
    size?: TerminalSize,
  ): ExecSession {
    const session: ExecSession = {
      id: randomBytes(32).toString('hex'),
      containerId,
      request,
      attachment,
      running: false,
      started: false,
      exitCode: null,
      pid: 0,
      size,
      resize: undefined,
    };
    this.sessions.set(session.id, session);
    // An exec created and never started (a client that went away in between) must not stay forever.
    setTimeout(() => {
      if (!session.started) this.sessions.delete(session.id);
    }, ExecSessions.RETENTION_MS).unref();
    return session;
  }

  get(id: string): ExecSession | undefined {
    return this.sessions.get(id);
  }

  /** The ids of the execs running in a container (Docker's ExecIDs: null when there are none). */
  runningIn(containerId: string): string[] | null {
    const ids = [...this.sessions.values()]
      .filter((session) => session.containerId === containerId && session.running)
      .map((session) => session.id);
    return ids.length > 0 ? ids : null;
  }

  finished(session: ExecSession, exitCode: number): void {
    session.running = false;
    session.exitCode = exitCode;
    session.resize = undefined;
    setTimeout(() => this.sessions.delete(session.id), ExecSessions.RETENTION_MS).unref();
  }
}
