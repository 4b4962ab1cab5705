import { parseDetachKeys } from '../../detach-keys.js';
import { ExecBody } from '../../schemas/container.js';
import { DockerError } from '../docker-errors.js';
import type { ExecAttachment, TerminalSize } from '../exec-sessions.js';
import { first } from './params.js';

/** The sizes runcd's own session API accepts for a terminal (src/schemas/container.ts SessionControl). */
const MAX_TERMINAL_SIDE = 1000;

/** `POST /containers/ID/exec`'s body (docker CLI 28: Cmd, Env, WorkingDir, User, Tty, Attach*, ConsoleSize). */
export function execCreateOf(body: Record<string, unknown>): {
  request: ExecBody;
  attachment: ExecAttachment;
  size: TerminalSize | undefined;
} {
  const parsed = ExecBody.safeParse({
    args: body.Cmd,
    ...(body.Env !== undefined && body.Env !== null ? { env: body.Env } : {}),
    ...(typeof body.WorkingDir === 'string' && body.WorkingDir !== '' ? { cwd: body.WorkingDir } : {}),
    ...(typeof body.User === 'string' && body.User !== '' ? { user: body.User } : {}),
  });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field =
      { args: 'Cmd', env: 'Env', cwd: 'WorkingDir', user: 'User' }[String(issue?.path[0])] ?? 'body';
    throw new DockerError(400, `exec ${field}: ${issue?.message ?? 'invalid'}`);
  }
  if (body.DetachKeys !== undefined && body.DetachKeys !== null && typeof body.DetachKeys !== 'string') {
    throw new DockerError(400, 'exec DetachKeys: expected a string such as "ctrl-p,ctrl-q"');
  }
  if (typeof body.DetachKeys === 'string') {
    try {
      parseDetachKeys(body.DetachKeys);
    } catch (error) {
      // Docker refuses them at create too (`docker exec --detach-keys` with a typo answers at once).
      throw new DockerError(400, `exec DetachKeys: ${(error as Error).message}`);
    }
  }
  return {
    request: parsed.data,
    attachment: {
      tty: flag(body, 'Tty', false),
      stdin: flag(body, 'AttachStdin', false),
      // Docker's default is false; clients that leave them out still expect output, as runcd always gave it.
      stdout: flag(body, 'AttachStdout', true),
      stderr: flag(body, 'AttachStderr', true),
      detachKeys: typeof body.DetachKeys === 'string' ? body.DetachKeys : '',
    },
    size: consoleSizeOf(body.ConsoleSize),
  };
}

/** `POST /exec/ID/start`'s body: Detach, Tty (raw output instead of frames, as Docker decides it), ConsoleSize. */
export function execStartOf(body: Record<string, unknown>): {
  detach: boolean;
  tty: boolean;
  size: TerminalSize | undefined;
} {
  return {
    detach: flag(body, 'Detach', false),
    tty: flag(body, 'Tty', false),
    size: consoleSizeOf(body.ConsoleSize),
  };
}

/** `?h=ROWS&w=COLS` of a resize (exec and container alike). */
export function resizeQueryOf(query: Record<string, string | string[] | undefined>): TerminalSize {
  return { rows: side(first(query.h), 'h'), cols: side(first(query.w), 'w') };
}

/** Docker's `ConsoleSize: [height, width]`; null, absent or [0, 0] (a client without a terminal) is no size. */
function consoleSizeOf(value: unknown): TerminalSize | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.length !== 2 || !value.every((n) => Number.isInteger(n) && n >= 0)) {
    throw new DockerError(400, 'ConsoleSize: expected [height, width], two non-negative integers');
  }
  const [rows, cols] = value as [number, number];
  if (rows === 0 && cols === 0) return undefined;
  return { rows: side(String(rows), 'ConsoleSize height'), cols: side(String(cols), 'ConsoleSize width') };
}

function side(value: string | undefined, name: string): number {
  const number = Number(value);
  if (value === undefined || !/^\d+$/.test(value) || number < 1 || number > MAX_TERMINAL_SIDE) {
    throw new DockerError(
      400,
      `${name}: expected an integer from 1 to ${MAX_TERMINAL_SIDE}, got "${value ?? ''}"`,
    );
  }
  return number;
}

function flag(body: Record<string, unknown>, name: string, fallback: boolean): boolean {
  const value = body[name];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') throw new DockerError(400, `${name}: expected true or false`);
  return value;
}
