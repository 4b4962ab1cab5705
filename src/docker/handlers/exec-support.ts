import { dockerErrorFor } from '../docker-errors.js';
import type { ContainerService } from '../../lifecycle/container-service.js';
import type { LogSink } from '../../lifecycle/log-service.js';
import { PeerStream } from '../../peer-stream.js';
import type { ExecOutput } from '../../runtime/runc.js';
import { dockerIdOf } from '../docker-ids.js';
import { frame } from '../docker-stream.js';
import type { ExecSessions, ExecSession } from '../exec-sessions.js';

export async function runExec(
  containers: ContainerService,
  execs: ExecSessions,
  session: ExecSession,
  output: ExecOutput,
): Promise<void> {
  try {
    const result = await containers.exec(session.containerId, session.request, output);
    execs.finished(session, result.exitCode);
  } catch (error) {
    // The stream is already open: the failure goes to stderr, and the exit code is the one Docker uses when
    // the command cannot be run (127 when it does not exist, 126 otherwise).
    const message = dockerErrorFor(error).message;
    output.write('stderr', Buffer.from(`runcd: exec failed: ${message}\n`));
    execs.finished(session, exitCodeOfFailedExec(message));
  }
}

/** The exit code Docker gives an exec that could not run: 127 when the command does not exist, 126 otherwise. */
export function exitCodeOfFailedExec(message: string): number {
  return /not found|no such file/i.test(message) ? 127 : 126;
}

/** `docker exec -d`: nobody reads the output, so it is taken and dropped (the process never blocks on it). */
export const DISCARDED_OUTPUT: ExecOutput = {
  write: () => true,
  drained: () => Promise.resolve(),
  signal: new AbortController().signal,
};

/** Log lines as Docker's multiplexed frames, with the peer's backpressure. */
export function logFrames(peer: PeerStream, timestamps: boolean): LogSink {
  return {
    write: (entry) =>
      peer.write(frame(entry.stream, Buffer.from(`${timestamps ? `${entry.time} ` : ''}${entry.line}\n`))),
    drained: () => peer.drained(),
  };
}

/** Ends a hijacked stream; a client that keeps its half open (stdin) must not hold the connection forever. */
export function endRawStream(peer: PeerStream): void {
  peer.end();
  if (!peer.closed) setTimeout(() => peer.destroy(), 5_000).unref();
}

export function execInspectOf(session: ExecSession): Record<string, unknown> {
  return {
    ID: session.id,
    Running: session.running,
    ExitCode: session.exitCode,
    ProcessConfig: {
      tty: session.attachment.tty,
      entrypoint: session.request.args[0],
      arguments: session.request.args.slice(1),
      privileged: false,
      user: session.request.user ?? '',
    },
    OpenStdin: session.attachment.stdin,
    OpenStderr: session.attachment.stderr,
    OpenStdout: session.attachment.stdout,
    CanRemove: false,
    ContainerID: dockerIdOf(session.containerId),
    DetachKeys: session.attachment.detachKeys,
    Pid: session.pid,
  };
}
