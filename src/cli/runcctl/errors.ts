/**
 * runc's exit codes, which runcctl keeps: 0 on success, 1 for any failure (a usage error included), 3 for an
 * unknown command, 255 when exec itself failed (any other exec status is the process's own).
 */
export const EXIT_FAILURE = 1;
export const EXIT_UNKNOWN_COMMAND = 3;
export const EXIT_EXEC_FAILED = 255;

/** A failure to report on one line (`runcctl: <message>`) and the exit code to leave with. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT_FAILURE,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The daemon's own words for a failed request: the problem's `detail`, on one line. */
export function problemDetail(error: unknown, response: { status: number; statusText: string }): string {
  const detail =
    typeof error === 'object' && error !== null && 'detail' in error && typeof error.detail === 'string'
      ? error.detail
      : typeof error === 'string' && error.trim() !== ''
        ? error
        : `HTTP ${response.status} ${response.statusText}`;
  return detail.replace(/\s*\n\s*/g, ' ');
}

/** Network-level failures (no daemon, refused, TLS) as one line that says what to check. */
export function connectionFailure(error: unknown, host: string): CliError {
  // OpenSSL's messages span lines and name source files; its `reason` is the readable part.
  const { code, message, reason } = error as { code?: string; message: string; reason?: string };
  const text = reason ? `TLS: ${reason}` : message.replace(/\s*\n\s*/g, ' ');
  const hint = code === 'ENOENT' || code === 'ECONNREFUSED' ? ' (is runcd running? see --host)' : '';
  return new CliError(`cannot reach runcd at ${host}: ${text}${hint}`);
}
