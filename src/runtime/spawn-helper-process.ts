/*
 * The spawn helper's own process (see spawn-helper.ts for why it exists). It imports nothing but node:child_process
 * and a buffer class, so it stays small: the point is that forking it is cheap. It runs what runcd asks, one message per request, and
 * answers with the exit status and the captured output; it owns no policy. It exits when runcd goes away (its IPC
 * channel closes), leaving the processes it started to run to their end, as runcd's own children would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { CappedChunks } from './capped-chunks.js';
import type { HelperMessage, HelperOutgoing, HelperRemoval, HelperRequest } from './spawn-helper.js';

const running = new Map<number, ChildProcess>();

function send(message: HelperMessage): void {
  // The channel is gone only when runcd is: nothing is left to tell.
  if (process.connected) process.send?.(message, undefined, undefined, () => undefined);
}

function killGroup(pid: number | undefined): void {
  if (!pid) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // the group is already gone
  }
}

function run(request: HelperRequest): void {
  let child: ChildProcess;
  let fifo: number | undefined;
  try {
    // The FIFO opened read-write here, as runcd would have: the child's write end can never fail with EPIPE.
    if (request.fifoAsFd3 !== undefined) fifo = openSync(request.fifoAsFd3, constants.O_RDWR);
    child = spawn(request.binary, request.argv, {
      stdio: [
        request.input !== undefined ? 'pipe' : 'ignore',
        request.ignoreStdout ? 'ignore' : 'pipe',
        'pipe',
        ...(fifo !== undefined ? [fifo] : []),
      ],
      // A process group of its own, so a deadline (or runcd) can kill whatever it forked too.
      detached: true,
      env: request.env,
      ...(request.cwd ? { cwd: request.cwd } : {}),
    });
  } catch (error) {
    send({ type: 'done', id: request.id, spawnError: (error as Error).message });
    return;
  } finally {
    // The child has its own copy now.
    if (fifo !== undefined) closeSync(fifo);
  }
  running.set(request.id, child);
  if (request.input !== undefined) {
    // A child that exits without reading its input closes the pipe: EPIPE here is its answer, not the helper's.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(request.input);
  }
  const stdout = new CappedChunks(request.outputLimitBytes);
  const stderr = new CappedChunks(request.outputLimitBytes);
  child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
  let timedOut = false;
  const timer =
    request.timeoutMs > 0
      ? setTimeout(() => {
          timedOut = true;
          killGroup(child.pid);
        }, request.timeoutMs)
      : undefined;
  let answered = false;
  const finish = (message: HelperMessage) => {
    if (answered) return;
    answered = true;
    if (timer) clearTimeout(timer);
    running.delete(request.id);
    send(message);
  };
  child.on('spawn', () => send({ type: 'spawned', id: request.id, pid: child.pid ?? 0 }));
  // Only a process that never started (ENOENT, EACCES) ends with an error and no exit status.
  child.on('error', (error) => {
    if (child.pid === undefined) finish({ type: 'done', id: request.id, spawnError: error.message });
  });
  const ended = (exitCode: number | null, signal: NodeJS.Signals | null) =>
    finish({
      type: 'done',
      id: request.id,
      exitCode,
      signal,
      stdout: stdout.text(),
      stderr: stderr.text(),
      truncated: stdout.truncated || stderr.truncated,
      timedOut,
    });
  // A process that daemonizes (conmon) leaves its pipes to a child that outlives it: its own exit is the answer.
  if (request.endAtExit) {
    child.on('exit', (exitCode, signal) => {
      child.stdout?.destroy();
      child.stderr?.destroy();
      ended(exitCode, signal);
    });
  }
  child.on('close', ended);
}

/** A removal that fails (a busy mount point) is left for runcd's next start, which sweeps what is left. */
function remove(request: HelperRemoval): void {
  void rm(request.path, { recursive: true, force: true, maxRetries: 3 })
    .catch(() => undefined)
    .finally(() => send({ type: 'done', id: request.id }));
}

process.on('message', (message: HelperOutgoing) => {
  if (message.type === 'kill') killGroup(running.get(message.id)?.pid);
  else if (message.type === 'remove') remove(message);
  else run(message);
});
process.on('disconnect', () => process.exit(0));
