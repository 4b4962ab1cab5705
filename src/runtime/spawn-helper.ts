import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Why runcd does not fork itself for its runtime commands: on Linux, Node spawns with fork + exec, and the fork
 * copies the page tables of the whole forking process while libuv blocks the event loop until the child has
 * exec'd. For runcd (90+ MiB resident) that is 5-9 ms per spawn on this kind of VM, against ~1.7 ms for a bare
 * Node process, and runcd spawns the runtime five times per container lifecycle: that blocking was most of what
 * runcd added to the runc CLI, and it serialised concurrent requests behind each other's forks.
 *
 * So a small helper process (spawn-helper-process.ts), forked once, does the forking: runcd sends it a request
 * over the IPC channel and gets the exit status and the captured output back, and its event loop is never held.
 * What the helper runs is exactly what ProcessRunner would have run itself (same argv, exact environment, own
 * process group, deadline); the pools, the records and every decision stay in runcd. Only commands whose output
 * is captured whole go through it, and conmon, whose sync FIFO the helper opens by path; streams (exec sessions
 * with stdin or streamed output, stats) stay with ProcessRunner.spawn.
 *
 * If the helper dies, the calls it had in flight fail (their processes run on, in their own groups, as runcd's
 * children would if runcd died) and the next call starts a new helper. If it cannot be started at all, callers
 * fall back to spawning directly (`available` turns false).
 */

export interface HelperRequest {
  type: 'run';
  id: number;
  binary: string;
  argv: readonly string[];
  /** The child's whole environment. */
  env: Record<string, string>;
  cwd?: string | undefined;
  /** SIGKILL the child's process group after this long; 0 for no deadline (the caller keeps its own). */
  timeoutMs: number;
  /** Bytes kept of stdout and of stderr each. */
  outputLimitBytes: number;
  /** stdout goes to /dev/null. */
  ignoreStdout?: boolean;
  /** Written to the child's stdin, which is then closed (a CNI plugin's config); without it stdin is closed. */
  input?: string;
  /** A FIFO the helper opens read-write and hands to the child as fd 3 (conmon's sync pipe). */
  fifoAsFd3?: string;
  /** Answer when the process itself exits, not when its pipes close (a child it forks may keep them). */
  endAtExit?: boolean;
}

/** Removes a directory tree (a deleted container's files, an exec's scratch dir); answered with `done`. */
export interface HelperRemoval {
  type: 'remove';
  id: number;
  path: string;
}

export type HelperMessage =
  | { type: 'spawned'; id: number; pid: number }
  | {
      type: 'done';
      id: number;
      exitCode?: number | null;
      signal?: NodeJS.Signals | null;
      stdout?: string;
      stderr?: string;
      truncated?: boolean;
      timedOut?: boolean;
      /** The binary never started (ENOENT, EACCES): there is no exit status. */
      spawnError?: string;
    };

export interface HelperResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  truncated: boolean;
  timedOut: boolean;
}

/** The binary could not be started at all. */
export class SpawnFailedError extends Error {
  override name = 'SpawnFailedError';
}

interface Pending {
  resolve: (result: HelperResult) => void;
  reject: (error: Error) => void;
  onSpawn: ((pid: number) => void) | undefined;
}

const HELPER_PATH = fileURLToPath(new URL('./spawn-helper-process.js', import.meta.url));
/** A young generation of 1 MiB and a small old one: the helper holds nothing but a few output buffers. */
const HELPER_NODE_FLAGS = ['--max-semi-space-size=1', '--max-old-space-size=64', '--optimize-for-size'];

export class SpawnHelper {
  private child: ChildProcess | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failedToStart = false;
  private closed = false;

  constructor(private readonly path: string = HELPER_PATH) {}

  /** False once the helper could not be started: callers spawn directly. */
  get available(): boolean {
    return !this.failedToStart && !this.closed;
  }

  /** The helper's pid, once started (for tests and diagnostics). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  run(
    request: Omit<HelperRequest, 'type' | 'id'>,
    onSpawn?: (pid: number) => void,
  ): { id: number; result: Promise<HelperResult> } {
    const id = this.nextId++;
    const result = new Promise<HelperResult>((resolve, reject) => {
      const child = this.ensureStarted();
      this.pending.set(id, { resolve, reject, onSpawn });
      // While calls are in flight the channel keeps the event loop alive; idle, it never does.
      if (this.pending.size === 1) child.channel?.ref();
      child.send({ type: 'run', id, ...request } satisfies HelperRequest, (error) => {
        if (error)
          this.settle(
            id,
            undefined,
            new Error(`the spawn helper did not take the request: ${error.message}`),
          );
      });
    });
    return { id, result };
  }

  /**
   * Removes `path` recursively in the helper. Each async fs call wakes one of runcd's thread-pool threads, and on
   * this 2-vCPU VM the woken thread tends to preempt the event loop: a CPU profile of a lifecycle loop charged
   * ~2 ms of runcd's loop per lifecycle to the ~25 lstat/unlink/rmdir calls of its background removals. Here it
   * is one message. Rejects if the helper is gone (the caller removes the tree itself then).
   */
  remove(path: string): Promise<void> {
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      const child = this.ensureStarted();
      this.pending.set(id, { resolve: () => resolve(), reject, onSpawn: undefined });
      if (this.pending.size === 1) child.channel?.ref();
      child.send({ type: 'remove', id, path } satisfies HelperRemoval, (error) => {
        if (error)
          this.settle(
            id,
            undefined,
            new Error(`the spawn helper did not take the removal: ${error.message}`),
          );
      });
    });
  }

  /** SIGKILLs the process group of a call in flight. */
  kill(id: number): void {
    if (this.pending.has(id)) this.child?.send({ type: 'kill', id }, () => undefined);
  }

  /** Stops the helper; calls in flight fail. */
  close(): void {
    this.closed = true;
    const child = this.child;
    this.child = undefined;
    if (child?.connected) child.disconnect();
    this.failAll(new Error('the spawn helper was closed'));
  }

  private ensureStarted(): ChildProcess {
    if (this.closed) throw new Error('the spawn helper was closed');
    if (this.child) return this.child;
    const child = fork(this.path, [], {
      execArgv: HELPER_NODE_FLAGS,
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'json',
    });
    this.child = child;
    child.unref();
    child.channel?.unref();
    child.on('message', (message: HelperMessage) => this.receive(message));
    child.on('error', (error) => {
      // fork itself failed (no node binary, no memory): spawn directly from now on.
      if (child.pid === undefined) this.failedToStart = true;
      this.lost(child, error);
    });
    child.on('exit', (code, signal) =>
      this.lost(child, new Error(`the spawn helper exited (${signal ?? `code ${code}`})`)),
    );
    return child;
  }

  private receive(message: HelperMessage): void {
    const call = this.pending.get(message.id);
    if (!call) return;
    if (message.type === 'spawned') {
      call.onSpawn?.(message.pid);
      return;
    }
    if (message.spawnError !== undefined) {
      this.settle(message.id, undefined, new SpawnFailedError(message.spawnError));
      return;
    }
    this.settle(message.id, {
      exitCode: message.exitCode ?? null,
      signal: message.signal ?? null,
      stdout: message.stdout ?? '',
      stderr: message.stderr ?? '',
      truncated: message.truncated ?? false,
      timedOut: message.timedOut ?? false,
    });
  }

  private settle(id: number, result: HelperResult | undefined, error?: Error): void {
    const call = this.pending.get(id);
    if (!call) return;
    this.pending.delete(id);
    if (this.pending.size === 0) this.child?.channel?.unref();
    if (error) call.reject(error);
    else call.resolve(result!);
  }

  private lost(child: ChildProcess, error: Error): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.failAll(error);
  }

  private failAll(error: Error): void {
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, error);
  }
}
