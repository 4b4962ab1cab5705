import type { WebSocket } from 'ws';
import { CliError, EXIT_EXEC_FAILED } from './errors.js';

/** The local side of `runcctl exec -t`: raw bytes in and out, the terminal's size and its changes. */
export interface TerminalIo {
  input: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  write(stream: 'stdout' | 'stderr', data: Uint8Array): void;
  /** undefined when stdout is not a terminal. */
  size(): { rows: number; cols: number } | undefined;
  onResize(handler: () => void): () => void;
}

/**
 * Drives an exec session (GET /containers/ID/exec/session, a WebSocket) as `runc exec -t` drives its pty: the
 * local terminal in raw mode, so every key (^C included) goes to the container's process and its echo comes
 * back; the size sent at start and on every SIGWINCH; stdin's end (a pipe's EOF) passed on; resolves with the
 * process's exit code. An attachment (GET /containers/ID/attach/session) is driven the same way; it also ends
 * by a detach (runcd saw the detach keys), which resolves with 0. The terminal is restored whatever happens;
 * a session refused or lost rejects with `failureExitCode`.
 */
export function runTerminalSession(
  socket: WebSocket,
  terminal: TerminalIo,
  failureExitCode = EXIT_EXEC_FAILED,
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const input = terminal.input;
    const raw = input.isTTY === true && typeof input.setRawMode === 'function';
    let exitCode: number | undefined;
    let detached = false;
    let failure: Error | undefined;
    let stopResize: (() => void) | undefined;
    const onInput = (chunk: Buffer | string) =>
      socket.send(typeof chunk === 'string' ? Buffer.from(chunk) : chunk, { binary: true });
    const onEnd = () => socket.send(JSON.stringify({ type: 'eof' }));
    const restore = () => {
      stopResize?.();
      input.off('data', onInput);
      input.off('end', onEnd);
      if (raw) input.setRawMode!(false);
      input.pause();
    };
    socket.on('unexpected-response', (_request, response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        let detail = `runcd answered ${response.statusCode}`;
        try {
          const problem = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { detail?: string };
          if (problem.detail) detail = problem.detail;
        } catch {
          // not a problem document
        }
        reject(new CliError(detail, failureExitCode));
      });
    });
    socket.on('error', (error) => {
      failure = error;
    });
    socket.on('open', () => {
      if (raw) input.setRawMode!(true);
      input.on('data', onInput);
      input.on('end', onEnd);
      input.resume();
      stopResize = terminal.onResize(() => {
        const size = terminal.size();
        if (size) socket.send(JSON.stringify({ type: 'resize', ...size }));
      });
    });
    socket.on('message', (data: Buffer, binary: boolean) => {
      if (binary) {
        terminal.write(data[0] === 2 ? 'stderr' : 'stdout', data.subarray(1));
        return;
      }
      const control = JSON.parse(data.toString('utf8')) as {
        type: string;
        exitCode?: number | null;
        message?: string;
      };
      if (control.type === 'exit') exitCode = control.exitCode ?? undefined;
      if (control.type === 'detached') detached = true;
      if (control.type === 'error') failure = new Error(control.message);
    });
    socket.on('close', (code, reason) => {
      restore();
      if (exitCode !== undefined) resolve(exitCode);
      else if (detached) resolve(0);
      else
        reject(
          new CliError(
            `the session ended without an exit code (${failure?.message ?? `${code} ${reason.toString()}`.trim()})`,
            failureExitCode,
          ),
        );
    });
  });
}
