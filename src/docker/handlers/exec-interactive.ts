import type { FastifyReply, FastifyRequest } from 'fastify';
import { parseDetachKeys } from '../../detach-keys.js';
import type {
  ExecSession as LiveSession,
  ExecSessions as InteractiveSessions,
  SessionHandlers,
} from '../../lifecycle/exec-sessions.js';
import type { OciProcess } from '../../runtime/oci.js';
import { dockerErrorFor } from '../docker-errors.js';
import type { ExecSession, ExecSessions, TerminalSize } from '../exec-sessions.js';
import { HijackedSession } from '../hijacked-session.js';
import { exitCodeOfFailedExec } from './exec-support.js';

/**
 * `docker exec -it` and `docker exec -i`: the exec runs as an interactive session (lifecycle/exec-sessions.ts:
 * its own conmon, a pty with -t, a stdin that stays open), bridged to the hijacked connection. Its exit code is
 * the session's, recorded whoever is connected; a client that leaves hangs the process up (SIGHUP, then SIGKILL),
 * unless the start asked for Detach or the client typed the detach keys (then the process runs on, as Docker's).
 */
export interface InteractiveStart {
  sessions: InteractiveSessions;
  execs: ExecSessions;
  exec: ExecSession;
  /** Docker decides the framing by the start's Tty, not the exec's. */
  rawStream: boolean;
}

/** Attached: the connection is hijacked at once, and a failure to run is written on it as Docker's daemon does. */
export async function startAttached(
  { sessions, execs, exec, rawStream }: InteractiveStart,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<void> {
  const { attachment } = exec;
  const bridge = HijackedSession.open(request, reply, {
    rawStream,
    stdout: attachment.stdout,
    stderr: attachment.stderr,
    stdin: attachment.stdin,
    halfCloseIsLeaving: attachment.tty && attachment.stdin,
    // A terminal's keystrokes are scanned for the detach keys (checked at create), as Docker's daemon does.
    detachKeys: attachment.tty && attachment.stdin ? parseDetachKeys(attachment.detachKeys) : undefined,
  });
  const started = await run(sessions, exec, {
    onOutput: (stream, data) => bridge.output(stream, data),
    onExit: (exitCode) => {
      // The exit code is in place before the stream ends: the client asks for it once it sees the end.
      execs.finished(exec, exitCode);
      bridge.end();
    },
  }).catch((error: unknown) => {
    const message = dockerErrorFor(error).message;
    execs.finished(exec, exitCodeOfFailedExec(message));
    bridge.fail(`runcd: exec failed: ${message}`);
    return undefined;
  });
  if (started) bridge.attach(started);
}

/** Detached (`docker exec -d -t`): nobody reads the output, and nobody leaving ends the process. */
export async function startDetached({ sessions, execs, exec }: InteractiveStart): Promise<void> {
  try {
    const started = await run(sessions, exec, {
      onOutput: () => undefined,
      onExit: (exitCode) => execs.finished(exec, exitCode),
    });
    started.endInput();
  } catch (error) {
    execs.finished(exec, exitCodeOfFailedExec(dockerErrorFor(error).message));
    throw error;
  }
}

async function run(
  sessions: InteractiveSessions,
  exec: ExecSession,
  handlers: SessionHandlers,
): Promise<LiveSession> {
  const size = exec.size;
  const process: OciProcess = await sessions.prepare(exec.containerId, {
    ...exec.request,
    tty: exec.attachment.tty,
    size,
  });
  const session = await sessions.start(exec.containerId, process, handlers);
  exec.pid = session.pid;
  if (exec.running) {
    const resize = (next: TerminalSize) => {
      exec.size = next;
      session.resize(next.rows, next.cols);
    };
    exec.resize = resize;
    // A resize that came while the process was being started (the CLI sends one right after the upgrade).
    if (exec.size && exec.size !== size) resize(exec.size);
  }
  return session;
}
