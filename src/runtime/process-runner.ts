import { closeSync, constants, openSync, readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { execa, type ResultPromise } from 'execa';
import { RuntimeBusyError } from '../errors.js';
import { CappedChunks } from './capped-chunks.js';
import { ConcurrencyLimiter } from './concurrency-limiter.js';
import { currentOperation } from './operation-context.js';
import { SpawnFailedError, SpawnHelper, type HelperResult, type SpawnHelperOptions } from './spawn-helper.js';

/**
 * The one place runcd spawns processes. Every child gets a clean environment (only PATH and what the caller
 * names), stdin closed, only the stdio descriptors it asks for (Node opens everything else close-on-exec), its own
 * process group, and a deadline after which the whole group is SIGKILLed, so a wedged runtime (or anything it
 * forked) can never hang a request or linger. The number of runtime processes at once is capped, with a bounded
 * queue behind the cap: when that is full too the caller gets a RuntimeBusyError (503) instead of an
 * ever-growing backlog. Commands whose output is captured whole are forked by a small helper process rather than
 * by runcd itself (spawn-helper.ts says why); streams and handed-over descriptors are spawned here.
 *
 * (Over 400 lines on purpose: every way runcd starts a process, captured, daemonizing or streamed, sits side by
 * side with the same pools, environment and records, so a reader can compare them.)
 */

export const CLEAN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface RunOptions {
  timeoutMs: number;
  env?: Record<string, string>;
  /** Aborting kills the process group (a client that went away cancels a registry pull). */
  signal?: AbortSignal;
  /** Sees stdout as it comes (skopeo's "Copying blob" lines become pull progress). */
  onStdout?: (chunk: Buffer) => void;
  /** Written to stdin, which is then closed (a CNI plugin's config); without it stdin is closed from the start. */
  input?: string;
}

/** Output a captured command may write, per stream, before the rest is dropped: bounds runcd's memory. */
const RUN_OUTPUT_LIMIT_BYTES = 64 * 1024 * 1024;
/** How long past its own deadline a command may take to be reported before runcd stops waiting for the helper. */
const HELPER_REPORT_GRACE_MS = 10_000;

export interface CaptureOptions {
  /** Bytes kept of stdout and of stderr each. */
  outputLimitBytes: number;
  /** Counted in the session pool (an exec), not the command pool. */
  longLived?: boolean;
  /** The child's pid once it runs (to kill it, or what it started, by the caller's own rules). */
  onSpawn?: (pid: number) => void;
}

export interface CaptureResult {
  /** The exit status, or undefined for a process ended by a signal. */
  exitCode: number | undefined;
  signal: NodeJS.Signals | undefined;
  stdout: string;
  stderr: string;
  truncated: boolean;
}

export interface DaemonizingOptions {
  env: Record<string, string>;
  cwd: string;
  /** A FIFO handed to the child as fd 3, opened read-write (so its writes never fail with EPIPE). */
  syncFifo: string;
  stderrLimitBytes: number;
}

export interface DaemonizingProcess {
  pid: number;
  /** Its own exit (not its daemon's), with what it wrote to stderr until then. */
  exited: Promise<CaptureResult>;
  /** Frees the slot early (once the daemon reported); called anyway when the process exits. */
  release: () => void;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
}

export interface Invocation {
  binary: string;
  argv: readonly string[];
  exitCode: number | undefined;
  durationMs: number;
  timedOut: boolean;
}

export type InvocationListener = (invocation: Invocation) => void;

export interface ProcessLimits {
  /** Short runtime commands (state, start, kill, delete, conmon's create) running at once. */
  maxConcurrent: number;
  /** Commands allowed to wait for a slot before new requests are refused with 503. */
  maxQueued: number;
  /** Long-lived processes (`runc exec` sessions) running at once; they have their own pool so they can never
   * starve the commands that would stop them. */
  maxSessions: number;
  maxSessionsQueued: number;
}

export const DEFAULT_PROCESS_LIMITS: ProcessLimits = {
  maxConcurrent: 8,
  maxQueued: 64,
  maxSessions: 32,
  maxSessionsQueued: 32,
};

const RETRY_AFTER_SECONDS = 1;

/**
 * execa's options for every spawn, chosen for what runcd needs and nothing more: its defaults cost about 3 ms of
 * main-thread time per spawn here, on a path that spawns the runtime five times per container lifecycle.
 * - `cleanup: false`: execa would register a signal-exit handler per child to kill it when runcd exits. runcd
 *   kills process groups itself (deadlines, stop), and conmon must outlive runcd by design.
 * - `buffer: false`: see run(); callers of spawn() consume the streams they asked for.
 * - `encoding: 'buffer'`, `stripFinalNewline: false`: no decoding or trimming pass over output nobody reads.
 * - `forceKillAfterDelay: false`: runcd only ever sends SIGKILL, so execa's follow-up kill timer is pointless.
 * - `detached: true`: a process group of its own, so a deadline can kill whatever the runtime forked, too.
 * - `extendEnv: false`: the child's environment is exactly what runcd names (see CLEAN_PATH).
 * - `reject: false`: a runtime's non-zero exit is an answer to decode (runc's own words), not an exception.
 * `verbose` ('none') and `ipc` (off unless `node: true`) are already off by default.
 */
const LEAN_EXECA_OPTIONS = {
  reject: false,
  cleanup: false,
  buffer: false,
  encoding: 'buffer',
  stripFinalNewline: false,
  forceKillAfterDelay: false,
  detached: true,
  extendEnv: false,
  verbose: 'none',
  ipc: false,
} as const;

type LeanSubprocess = ResultPromise<typeof LEAN_EXECA_OPTIONS>;

type Stdio = 'ignore' | 'pipe';

export interface SpawnOptions {
  env?: Record<string, string>;
  /** Beyond stdio, a number is a descriptor of runcd's handed to the child as is (conmon's sync FIFO). */
  stdio: readonly [Stdio, Stdio, Stdio, ...(Stdio | number)[]];
  /** Counted in the session pool instead of the command pool. */
  longLived?: boolean;
  cwd?: string;
}

export interface SpawnedProcess {
  child: LeanSubprocess;
  /** Frees the process's slot early (e.g. once conmon has daemonized); called anyway when the child exits. */
  release: () => void;
}

export class ProcessRunner {
  private readonly listeners: InvocationListener[] = [];
  private readonly commands: ConcurrencyLimiter;
  private readonly sessions: ConcurrencyLimiter;
  private readonly helper: SpawnHelper | undefined;
  /** Number of processes spawned since start; the security tests assert rejected requests leave it unchanged. */
  spawnCount = 0;

  constructor(
    limits: Partial<ProcessLimits> = {},
    options: { spawnHelper?: boolean } & Pick<SpawnHelperOptions, 'nativeBinary' | 'logger'> = {},
  ) {
    const effective = { ...DEFAULT_PROCESS_LIMITS, ...limits };
    this.commands = new ConcurrencyLimiter(effective.maxConcurrent, effective.maxQueued);
    this.sessions = new ConcurrencyLimiter(effective.maxSessions, effective.maxSessionsQueued);
    this.helper =
      options.spawnHelper === false
        ? undefined
        : new SpawnHelper({
            ...(options.nativeBinary !== undefined ? { nativeBinary: options.nativeBinary } : {}),
            ...(options.logger ? { logger: options.logger } : {}),
          });
  }

  /** The helper's pid, once it was started (for tests). */
  get spawnHelperPid(): number | undefined {
    return this.helper?.pid;
  }

  /** Which spawn helper runs the captured commands: the compiled one unless it fell back (for tests). */
  get spawnHelperKind(): 'native' | 'node' | undefined {
    return this.helper?.kind;
  }

  /**
   * Removes a directory tree off runcd's event loop and thread pool: in the spawn helper when there is one
   * (SpawnHelper.remove says why), here otherwise. Never rejects; a tree that could not be removed stays.
   */
  async removeTree(path: string): Promise<void> {
    if (this.helper?.available) {
      try {
        await this.helper.remove(path);
        return;
      } catch {
        // The helper went away with the removal in flight: do it here.
      }
    }
    await rm(path, { recursive: true, force: true }).catch(() => undefined);
  }

  /** Stops the spawn helper; processes already started run to their end. */
  close(): void {
    this.helper?.close();
  }

  /** Processes running now, per pool (for tests and diagnostics). */
  get load(): { commands: number; commandsQueued: number; sessions: number; sessionsQueued: number } {
    return {
      commands: this.commands.running,
      commandsQueued: this.commands.queued,
      sessions: this.sessions.running,
      sessionsQueued: this.sessions.queued,
    };
  }

  onInvocation(listener: InvocationListener): void {
    this.listeners.push(listener);
  }

  async run(binary: string, argv: readonly string[], options: RunOptions): Promise<RunResult> {
    // A caller that reads the output as it comes, or may cancel, needs the child here (a pull's skopeo).
    const streamed = options.onStdout !== undefined || options.signal !== undefined;
    if (this.helper?.available && !streamed) return this.runThroughHelper(binary, argv, options);
    const release = await this.acquire(this.commands, 'runtime commands');
    const started = performance.now();
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    try {
      this.spawnCount++;
      const child = execa(binary, argv, {
        ...LEAN_EXECA_OPTIONS,
        stdio: [options.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        env: { PATH: CLEAN_PATH, ...options.env },
      });
      if (options.input !== undefined) {
        child.stdin?.on('error', () => undefined);
        child.stdin?.end(options.input);
      }
      // Collected here rather than by execa's `buffer`: execa reads a buffered stream through an async iterator
      // with its own AbortController per stream, several times the cost of two 'data' listeners.
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      child.stdout?.on('data', (chunk: Buffer) => {
        stdout.push(chunk);
        options.onStdout?.(chunk);
      });
      child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
      timer = setTimeout(() => {
        timedOut = true;
        killProcessGroup(child.pid);
      }, options.timeoutMs);
      const abort = () => killProcessGroup(child.pid);
      if (options.signal?.aborted) abort();
      options.signal?.addEventListener('abort', abort, { once: true });
      const result = await child.finally(() => options.signal?.removeEventListener('abort', abort));
      const durationMs = performance.now() - started;
      const exitCode = typeof result.exitCode === 'number' ? result.exitCode : -1;
      this.emit({ binary, argv, exitCode, durationMs, timedOut });
      if (result.failed && result.exitCode === undefined && !timedOut && !result.isTerminated) {
        // The binary could not be spawned at all (ENOENT, EACCES): there is no exit code to report.
        throw new Error(`cannot run ${binary}: ${result.originalMessage ?? result.shortMessage}`);
      }
      return {
        exitCode,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
        timedOut,
        durationMs,
      };
    } finally {
      if (timer) clearTimeout(timer);
      release();
    }
  }

  /**
   * Runs a command whose output is captured whole, with no deadline of its own (the caller keeps one, e.g.
   * runc exec's, which kills the exec'd process rather than runc): through the helper when there is one.
   */
  async capture(binary: string, argv: readonly string[], options: CaptureOptions): Promise<CaptureResult> {
    const pool = options.longLived ? this.sessions : this.commands;
    const release = await this.acquire(pool, options.longLived ? 'exec sessions' : 'runtime commands');
    try {
      this.spawnCount++;
      if (this.helper?.available) {
        const { result } = this.helper.run(
          {
            binary,
            argv,
            env: { PATH: CLEAN_PATH },
            timeoutMs: 0,
            outputLimitBytes: options.outputLimitBytes,
          },
          options.onSpawn,
        );
        const outcome = await result.catch((error: unknown) => {
          throw error instanceof SpawnFailedError
            ? new Error(`cannot run ${binary}: ${error.message}`)
            : error;
        });
        return {
          exitCode: outcome.exitCode ?? undefined,
          signal: outcome.signal ?? undefined,
          stdout: outcome.stdout,
          stderr: outcome.stderr,
          truncated: outcome.truncated,
        };
      }
      const child = execa(binary, argv, {
        ...LEAN_EXECA_OPTIONS,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: CLEAN_PATH },
      });
      if (child.pid) options.onSpawn?.(child.pid);
      const stdout = new CappedChunks(options.outputLimitBytes);
      const stderr = new CappedChunks(options.outputLimitBytes);
      child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
      child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
      const result = await child;
      if (result.failed && result.exitCode === undefined && !result.isTerminated) {
        throw new Error(`cannot run ${binary}: ${result.originalMessage ?? result.shortMessage}`);
      }
      return {
        exitCode: result.exitCode,
        signal: result.signal,
        stdout: stdout.text(),
        stderr: stderr.text(),
        truncated: stdout.truncated || stderr.truncated,
      };
    } finally {
      release();
    }
  }

  /**
   * Starts a process that forks a daemon of its own and exits (conmon), through the helper when there is one.
   * Resolves once it runs; the slot is held until it exits or the caller releases it.
   */
  async startDaemonizing(
    binary: string,
    argv: readonly string[],
    options: DaemonizingOptions,
  ): Promise<DaemonizingProcess> {
    const slot = await this.acquire(this.commands, 'runtime commands');
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      slot();
    };
    this.spawnCount++;
    try {
      if (this.helper?.available) {
        let spawned!: (pid: number) => void;
        const running = new Promise<number>((resolve) => (spawned = resolve));
        const { result } = this.helper.run(
          {
            binary,
            argv,
            env: { PATH: CLEAN_PATH, ...options.env },
            cwd: options.cwd,
            timeoutMs: 0,
            outputLimitBytes: options.stderrLimitBytes,
            ignoreStdout: true,
            fifoAsFd3: options.syncFifo,
            endAtExit: true,
          },
          spawned,
        );
        const exited = result.then(
          (outcome): CaptureResult => ({
            exitCode: outcome.exitCode ?? undefined,
            signal: outcome.signal ?? undefined,
            stdout: '',
            stderr: outcome.stderr,
            truncated: outcome.truncated,
          }),
          (error: unknown) => {
            throw error instanceof SpawnFailedError
              ? new Error(`cannot run ${binary}: ${error.message}`)
              : error;
          },
        );
        void exited.then(release, release);
        // A process that never ran rejects `exited` before any pid arrives.
        const pid = await Promise.race([running, exited.then(() => 0)]);
        return { pid, exited, release };
      }
      const fifo = openSync(options.syncFifo, constants.O_RDWR);
      let child: LeanSubprocess;
      try {
        child = execa(binary, argv, {
          ...LEAN_EXECA_OPTIONS,
          // execa hands a descriptor number beyond stdio to the child as is; its types only admit one for fds 0-2.
          stdio: ['ignore', 'ignore', 'pipe', fifo] as unknown as readonly [Stdio, Stdio, Stdio],
          env: { PATH: CLEAN_PATH, ...options.env },
          cwd: options.cwd,
        }) as unknown as LeanSubprocess;
      } finally {
        closeSync(fifo);
      }
      const stderr = new CappedChunks(options.stderrLimitBytes);
      child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
      const exited = new Promise<CaptureResult>((resolve) => {
        child.on('exit', (exitCode, signal) => {
          child.stderr?.destroy();
          resolve({
            exitCode: exitCode ?? undefined,
            signal: signal ?? undefined,
            stdout: '',
            stderr: stderr.text(),
            truncated: stderr.truncated,
          });
        });
      });
      void child.catch(() => undefined);
      void exited.then(release);
      return { pid: child.pid ?? 0, exited, release };
    } catch (error) {
      release();
      throw error;
    }
  }

  /**
   * Spawns without buffering; the caller consumes the streams it asked for. The child leads its own process
   * group (see killProcessGroup) and holds a slot until it exits or the caller releases it.
   */
  async spawn(binary: string, argv: readonly string[], options: SpawnOptions): Promise<SpawnedProcess> {
    const pool = options.longLived ? this.sessions : this.commands;
    const release = await this.acquire(pool, options.longLived ? 'exec sessions' : 'runtime commands');
    this.spawnCount++;
    let child;
    try {
      child = execa(binary, argv, {
        ...LEAN_EXECA_OPTIONS,
        // execa hands a descriptor number beyond stdio to the child as is; its types only admit one for fds 0-2.
        stdio: options.stdio as readonly [Stdio, Stdio, Stdio, ...Stdio[]],
        env: { PATH: CLEAN_PATH, ...options.env },
        ...(options.cwd ? { cwd: options.cwd } : {}),
      }) as unknown as LeanSubprocess;
    } catch (error) {
      release();
      throw error;
    }
    void child.finally(release);
    return { child, release };
  }

  private async runThroughHelper(
    binary: string,
    argv: readonly string[],
    options: RunOptions,
  ): Promise<RunResult> {
    const helper = this.helper!;
    const release = await this.acquire(this.commands, 'runtime commands');
    const started = performance.now();
    let backstop: NodeJS.Timeout | undefined;
    try {
      this.spawnCount++;
      const call = helper.run({
        binary,
        argv,
        env: { PATH: CLEAN_PATH, ...options.env },
        timeoutMs: options.timeoutMs,
        outputLimitBytes: RUN_OUTPUT_LIMIT_BYTES,
        ...(options.input !== undefined ? { input: options.input } : {}),
      });
      // The helper enforces the deadline; this only guards against a helper that stopped answering.
      const silent = new Promise<HelperResult>((resolve) => {
        backstop = setTimeout(() => {
          helper.kill(call.id);
          resolve({
            exitCode: null,
            signal: 'SIGKILL',
            stdout: '',
            stderr: '',
            truncated: false,
            timedOut: true,
          });
        }, options.timeoutMs + HELPER_REPORT_GRACE_MS);
      });
      let outcome: HelperResult;
      try {
        outcome = await Promise.race([call.result, silent]);
      } catch (error) {
        if (error instanceof SpawnFailedError) throw new Error(`cannot run ${binary}: ${error.message}`);
        throw error;
      }
      const durationMs = performance.now() - started;
      const exitCode = outcome.exitCode ?? -1;
      this.emit({ binary, argv, exitCode, durationMs, timedOut: outcome.timedOut });
      return {
        exitCode,
        stdout: outcome.stdout,
        stderr: outcome.stderr,
        timedOut: outcome.timedOut,
        durationMs,
      };
    } finally {
      if (backstop) clearTimeout(backstop);
      release();
    }
  }

  recordInvocation(invocation: Invocation): void {
    this.emit(invocation);
  }

  /**
   * Only callers (operations) are refused when the queue is full, and only before their first slot. runcd's own
   * work outside any request (reconciling at startup, restarts by policy) is bounded by the number of
   * containers and must finish, so it always queues.
   */
  private async acquire(pool: ConcurrencyLimiter, what: string): Promise<() => void> {
    const operation = currentOperation();
    const pending = pool.tryAcquire({ force: operation === undefined || operation.admitted });
    if (!pending) {
      throw new RuntimeBusyError(
        `too many ${what} at once (${pool.limit} running, ${pool.queueLimit} waiting); retry shortly`,
        RETRY_AFTER_SECONDS,
      );
    }
    if (operation) operation.admitted = true;
    return pending;
  }

  private emit(invocation: Invocation): void {
    currentOperation()?.invocations.push(invocation);
    for (const listener of this.listeners) listener(invocation);
  }
}

/** SIGKILLs a process group led by `pid` (every child spawned here leads one). */
export function killProcessGroup(pid: number | undefined): void {
  if (!pid) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // the group is already gone
  }
}

const O_CLOEXEC = 0o2000000;

/**
 * Closes every descriptor above stdio that this process inherited without close-on-exec. Node opens its own
 * descriptors close-on-exec, but libuv does not close the others when it spawns, so anything a parent left open
 * (a pipe, a socket, a file) would be handed to runc and, through it, come near a container. Called once, at
 * daemon startup, before anything is spawned. Returns the descriptors it closed.
 */
export function closeInheritedDescriptors(): number[] {
  const closed: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc/self/fd');
  } catch {
    return closed;
  }
  for (const entry of entries) {
    const fd = Number(entry);
    if (!(fd > 2)) continue;
    let flags: number;
    try {
      flags = parseInt(
        /^flags:\s+([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1] ?? '',
        8,
      );
    } catch {
      continue; // the descriptor that listed the directory, already closed
    }
    if (Number.isNaN(flags) || (flags & O_CLOEXEC) !== 0) continue;
    try {
      closeSync(fd);
      closed.push(fd);
    } catch {
      // already closed
    }
  }
  return closed;
}
