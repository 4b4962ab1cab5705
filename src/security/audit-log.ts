import { closeSync, fchmodSync, openSync, writeSync } from 'node:fs';
import type { Logger } from 'pino';

/**
 * The audit trail: one JSON line per mutating or denied request, appended to STATE_DIR/audit.log (mode 0600)
 * and logged through pino. It names the token, never its secret, and carries no request headers at all.
 */

export interface AuditedInvocation {
  argv: string[];
  exitCode: number | null;
  durationMs: number;
  timedOut: boolean;
}

export interface AuditRecord {
  time: string;
  requestId: string;
  transport: 'unix' | 'tcp';
  peer: string;
  /** The token's name; null when an anonymous caller used the unix socket without --require-token. */
  token: string | null;
  scope: string | null;
  method: string;
  /** The matched route (`/containers/:id/kill`); null when the URL matched none. */
  route: string | null;
  url: string;
  containerId: string | null;
  status: number;
  /** ok (2xx/3xx), denied (401/403/429), rejected (other 4xx), failed (5xx). */
  outcome: 'ok' | 'denied' | 'rejected' | 'failed';
  /** The problem code of an error answer. */
  code: string | null;
  /** Every runtime process the request ran: argv (binary first) and exit status. */
  runtime: AuditedInvocation[];
  durationMs: number;
}

export class AuditLog {
  private fd: number | undefined;

  constructor(
    readonly path: string,
    private readonly logger: Logger,
  ) {
    this.fd = openSync(path, 'a', 0o600);
    // An audit log that existed before (maybe made by hand) is tightened too: it names tokens and peers.
    fchmodSync(this.fd, 0o600);
  }

  write(record: AuditRecord): void {
    this.logger.info({ audit: record }, 'audit');
    if (this.fd === undefined) return;
    try {
      // One write of one line on an O_APPEND descriptor: concurrent records never interleave.
      writeSync(this.fd, JSON.stringify(record) + '\n');
    } catch (error) {
      this.logger.error({ err: error, path: this.path }, 'cannot write the audit log');
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

export function outcomeFor(status: number): AuditRecord['outcome'] {
  if (status < 400) return 'ok';
  if (status === 401 || status === 403 || status === 429) return 'denied';
  if (status < 500) return 'rejected';
  return 'failed';
}
