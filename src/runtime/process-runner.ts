import { spawn, type ChildProcess } from 'node:child_process';

/**
 * The one place runcd spawns processes. Every child gets a clean environment (only PATH), stdin closed, and a
 * timeout after which it is SIGKILLed, so a wedged runtime can never hang a request forever.
 *
 * Built on node:child_process directly: execa cost about 5 ms of main-thread time per spawn here (it registers
 * signal-exit handlers per child and wraps every stream), on a path that spawns runc five times per lifecycle.
 */

export const CLEAN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface RunOptions {
  timeoutMs: number;
  env?: Record<string, string>;
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

/** How a spawned process ended: its exit code, or the signal that killed it. */
export interface ProcessExit {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnedProcess {
  readonly child: ChildProcess;
  /** Settles once the process has exited and its stdio is closed; rejects only when it could not be spawned. */
  readonly exit: Promise<ProcessExit>;
}

type StdioChoice = 'ignore' | 'pipe';

export class ProcessRunner {
  private readonly listeners: InvocationListener[] = [];
  /** Number of processes spawned since start; the security tests assert rejected requests leave it unchanged. */
  spawnCount = 0;

  onInvocation(listener: InvocationListener): void {
    this.listeners.push(listener);
  }

  async run(binary: string, argv: readonly string[], options: RunOptions): Promise<RunResult> {
    const started = performance.now();
    const { child, exit } = this.spawn(binary, argv, { env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    let ended: ProcessExit;
    try {
      ended = await exit;
    } catch (error) {
      // The binary could not be spawned at all (ENOENT, EACCES): there is no exit code to report.
      throw new Error(`cannot run ${binary}: ${(error as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
    const durationMs = performance.now() - started;
    const exitCode = ended.exitCode ?? -1;
    this.emit({ binary, argv, exitCode, durationMs, timedOut });
    return {
      exitCode,
      stdout: Buffer.concat(stdout).toString('utf8'),
      stderr: Buffer.concat(stderr).toString('utf8'),
      timedOut,
      durationMs,
    };
  }

  /** Spawns without buffering; the caller consumes the streams it asked for. */
  spawn(
    binary: string,
    argv: readonly string[],
    options: {
      env?: Record<string, string> | undefined;
      stdio: readonly [StdioChoice, StdioChoice, StdioChoice, ...StdioChoice[]];
      detached?: boolean;
    },
  ): SpawnedProcess {
    this.spawnCount++;
    const child = spawn(binary, argv, {
      stdio: [...options.stdio],
      env: { PATH: CLEAN_PATH, ...options.env },
      detached: options.detached ?? false,
    });
    const exit = new Promise<ProcessExit>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (exitCode, signal) => resolve({ exitCode, signal }));
    });
    // A caller that never awaits `exit` must not see an unhandled rejection for a failed spawn.
    exit.catch(() => undefined);
    return { child, exit };
  }

  recordInvocation(invocation: Invocation): void {
    this.emit(invocation);
  }

  private emit(invocation: Invocation): void {
    for (const listener of this.listeners) listener(invocation);
  }
}
