import { randomBytes } from 'node:crypto';
import type { ExecBody } from '../schemas/container.js';

export interface ExecSession {
  id: string;
  containerId: string;
  request: ExecBody;
  running: boolean;
  started: boolean;
  exitCode: number | null;
}

/** Docker's exec is two calls (create, then start) plus an inspect for the exit code; this holds the state between. */
export class ExecSessions {
  private readonly sessions = new Map<string, ExecSession>();
  /** Finished sessions are kept this long for `GET /exec/{id}/json`, then forgotten. */
  private static readonly RETENTION_MS = 10 * 60_000;

  create(containerId: string, request: ExecBody): ExecSession {
    const session: ExecSession = {
      id: randomBytes(32).toString('hex'),
      containerId,
      request,
      running: false,
      started: false,
      exitCode: null,
    };
    this.sessions.set(session.id, session);
    return session;
  }

  get(id: string): ExecSession | undefined {
    return this.sessions.get(id);
  }

  finished(session: ExecSession, exitCode: number): void {
    session.running = false;
    session.exitCode = exitCode;
    setTimeout(() => this.sessions.delete(session.id), ExecSessions.RETENTION_MS).unref();
  }
}
