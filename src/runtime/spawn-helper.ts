import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { NATIVE_HELPER_PATH, NativeHelperChannel } from './native-spawn-helper.js';

/**
 * Why runcd does not fork itself for its runtime commands: on Linux, Node spawns with fork + exec, and the fork
 * copies the page tables of the whole forking process while libuv blocks the event loop until the child has
 * exec'd. For runcd (90+ MiB resident) that is 5-9 ms per spawn on this kind of VM, against ~1.7 ms for a bare
 * Node process, and runcd spawns the runtime five times per container lifecycle: that blocking was most of what
 * runcd added to the runc CLI, and it serialised concurrent requests behind each other's forks.
 *
 * So a small helper process, started once, does the forking: runcd sends it a request and gets the exit status
 * and the captured output back, and its event loop is never held. The helper is a compiled one when it was built
 * (native/spawn-helper/spawn-helper.c, over a binary framing on its stdin and stdout: spawn-helper-protocol.ts),
 * because a Node process is itself ~1.2 ms of the fork-to-exec and ~1 ms of message handling per call; the Node
 * one (spawn-helper-process.ts, over Node's IPC channel) when the compiled one is missing or fails its self-check
 * (its hello), which is logged once.
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

export interface HelperKill {
  type: 'kill';
  id: number;
}

export type HelperOutgoing = HelperRequest | HelperRemoval | HelperKill;

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

/** What SpawnHelper hears from a helper process, whichever kind it is. */
export interface HelperChannelEvents {
  message: (message: HelperMessage) => void;
  /** The helper is gone: its calls in flight fail, and the next call starts a new one. */
  lost: (error: Error) => void;
}

/** One helper process: the compiled one (native-spawn-helper.ts) or the Node one (NodeHelperChannel). */
export interface HelperChannel {
  readonly pid: number | undefined;
  /** `failed` is called if the message could not be handed over. */
  send(message: HelperOutgoing, failed: (error: Error) => void): void;
  /** While calls are in flight the helper keeps runcd's event loop alive; idle, it never does. */
  ref(): void;
  unref(): void;
  /** Ends the helper; what it started runs on. */
  close(): void;
}

const NODE_HELPER_PATH = fileURLToPath(new URL('./spawn-helper-process.js', import.meta.url));
/** A young generation of 1 MiB and a small old one: the helper holds nothing but a few output buffers. */
const HELPER_NODE_FLAGS = ['--max-semi-space-size=1', '--max-old-space-size=64', '--optimize-for-size'];

/** The Node helper, forked with an IPC channel. */
class NodeHelperChannel implements HelperChannel {
  private readonly child: ChildProcess;
  /** fork itself failed (no node binary, no memory): callers spawn directly from then on. */
  neverStarted = false;

  constructor(path: string, events: HelperChannelEvents) {
    const child = fork(path, [], {
      execArgv: HELPER_NODE_FLAGS,
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'json',
    });
    this.child = child;
    child.unref();
    child.channel?.unref();
    child.on('message', (message: HelperMessage) => events.message(message));
    child.on('error', (error) => {
      if (child.pid === undefined) this.neverStarted = true;
      events.lost(error);
    });
    child.on('exit', (code, signal) =>
      events.lost(new Error(`the spawn helper exited (${signal ?? `code ${code}`})`)),
    );
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  send(message: HelperOutgoing, failed: (error: Error) => void): void {
    this.child.send(message, (error) => {
      if (error) failed(error);
    });
  }

  ref(): void {
    this.child.channel?.ref();
  }

  unref(): void {
    this.child.channel?.unref();
  }

  close(): void {
    if (this.child.connected) this.child.disconnect();
  }
}

interface Pending {
  resolve: (result: HelperResult) => void;
  reject: (error: Error) => void;
  onSpawn: ((pid: number) => void) | undefined;
}

export interface SpawnHelperOptions {
  /** The compiled helper to try first; false for the Node helper alone. */
  nativeBinary?: string | false;
  nodeHelperPath?: string;
  /** Told once, at info, why the compiled helper is not used. */
  logger?: { info: (details: Record<string, unknown>, message: string) => void };
}

export class SpawnHelper {
  private channel: HelperChannel | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failedToStart = false;
  private closed = false;
  private useNative: boolean;
  private readonly nativeBinary: string;
  private readonly nodeHelperPath: string;

  constructor(private readonly options: SpawnHelperOptions = {}) {
    this.useNative = options.nativeBinary !== false;
    this.nativeBinary = options.nativeBinary || NATIVE_HELPER_PATH;
    this.nodeHelperPath = options.nodeHelperPath ?? NODE_HELPER_PATH;
  }

  /** False once the helper could not be started: callers spawn directly. */
  get available(): boolean {
    return !this.failedToStart && !this.closed;
  }

  /** The helper's pid, once started (for tests and diagnostics). */
  get pid(): number | undefined {
    return this.channel?.pid;
  }

  /** Which helper runs the calls: the compiled one unless it fell back (for tests and diagnostics). */
  get kind(): 'native' | 'node' {
    return this.useNative ? 'native' : 'node';
  }

  run(
    request: Omit<HelperRequest, 'type' | 'id'>,
    onSpawn?: (pid: number) => void,
  ): { id: number; result: Promise<HelperResult> } {
    const id = this.nextId++;
    const result = new Promise<HelperResult>((resolve, reject) =>
      this.send({ type: 'run', id, ...request } satisfies HelperRequest, 'request', {
        resolve,
        reject,
        onSpawn,
      }),
    );
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
    return new Promise<void>((resolve, reject) =>
      this.send({ type: 'remove', id, path } satisfies HelperRemoval, 'removal', {
        resolve: () => resolve(),
        reject,
        onSpawn: undefined,
      }),
    );
  }

  /** SIGKILLs the process group of a call in flight. */
  kill(id: number): void {
    if (this.pending.has(id)) this.channel?.send({ type: 'kill', id }, () => undefined);
  }

  /** Stops the helper; calls in flight fail. */
  close(): void {
    this.closed = true;
    const channel = this.channel;
    this.channel = undefined;
    channel?.close();
    this.failAll(new Error('the spawn helper was closed'));
  }

  private send(message: HelperRequest | HelperRemoval, what: string, call: Pending): void {
    const channel = this.ensureStarted();
    this.pending.set(message.id, call);
    if (this.pending.size === 1) channel.ref();
    channel.send(message, (error) =>
      this.settle(
        message.id,
        undefined,
        new Error(`the spawn helper did not take the ${what}: ${error.message}`),
      ),
    );
  }

  private ensureStarted(): HelperChannel {
    if (this.closed) throw new Error('the spawn helper was closed');
    if (this.channel) return this.channel;
    if (this.useNative) {
      try {
        const channel: HelperChannel = new NativeHelperChannel(this.nativeBinary, {
          message: (message) => this.receive(message),
          lost: (error) => this.lost(channel, error),
          unusable: (reason, unsent) => this.nativeUnusable(channel, reason, unsent),
        });
        this.channel = channel;
        return channel;
      } catch (error) {
        this.fallBack((error as Error).message);
      }
    }
    const channel: NodeHelperChannel = new NodeHelperChannel(this.nodeHelperPath, {
      message: (message) => this.receive(message),
      lost: (error) => {
        if (channel.neverStarted) this.failedToStart = true;
        this.lost(channel, error);
      },
    });
    this.channel = channel;
    return channel;
  }

  private fallBack(reason: string): void {
    this.useNative = false;
    this.options.logger?.info(
      { reason, binary: this.nativeBinary },
      'the compiled spawn helper is not used; runcd forks through the Node helper',
    );
  }

  /** The compiled helper failed its self-check: what it was given goes to the Node helper instead. */
  private nativeUnusable(
    channel: HelperChannel,
    reason: string,
    unsent: { message: HelperOutgoing; failed: (error: Error) => void }[],
  ): void {
    if (this.channel !== channel) return;
    this.channel = undefined;
    this.fallBack(reason);
    const next = this.ensureStarted();
    if (this.pending.size > 0) next.ref();
    for (const { message, failed } of unsent) next.send(message, failed);
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
    if (this.pending.size === 0) this.channel?.unref();
    if (error) call.reject(error);
    else call.resolve(result!);
  }

  private lost(channel: HelperChannel, error: Error): void {
    if (this.channel !== channel) return;
    this.channel = undefined;
    this.failAll(error);
  }

  private failAll(error: Error): void {
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, error);
  }
}
