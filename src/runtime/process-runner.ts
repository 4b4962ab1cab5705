import { execa, type ResultPromise } from 'execa';

/**
 * The one place runcd spawns processes. Every child gets a clean environment (only PATH), stdin closed, and a
 * timeout after which it is SIGKILLed, so a wedged runtime can never hang a request forever.
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

export class ProcessRunner {
  private readonly listeners: InvocationListener[] = [];
  /** Number of processes spawned since start; the security tests assert rejected requests leave it unchanged. */
  spawnCount = 0;

  onInvocation(listener: InvocationListener): void {
    this.listeners.push(listener);
  }

  async run(binary: string, argv: readonly string[], options: RunOptions): Promise<RunResult> {
    const started = performance.now();
    this.spawnCount++;
    const result = await execa(binary, argv, {
      reject: false,
      stdin: 'ignore',
      env: { PATH: CLEAN_PATH, ...options.env },
      extendEnv: false,
      timeout: options.timeoutMs,
      killSignal: 'SIGKILL',
      stripFinalNewline: false,
      encoding: 'utf8',
    });
    const durationMs = performance.now() - started;
    const exitCode = typeof result.exitCode === 'number' ? result.exitCode : -1;
    this.emit({ binary, argv, exitCode, durationMs, timedOut: result.timedOut });
    if (result.failed && result.exitCode === undefined && !result.timedOut && !result.isTerminated) {
      // The binary could not be spawned at all (ENOENT, EACCES): there is no exit code to report.
      throw new Error(`cannot run ${binary}: ${result.originalMessage ?? result.shortMessage}`);
    }
    return {
      exitCode,
      stdout: String(result.stdout ?? ''),
      stderr: String(result.stderr ?? ''),
      timedOut: result.timedOut,
      durationMs,
    };
  }

  /** Spawns without buffering; the caller consumes the streams it asked for. */
  spawn(
    binary: string,
    argv: readonly string[],
    options: {
      env?: Record<string, string>;
      stdio: readonly ['ignore' | 'pipe', 'ignore' | 'pipe', 'ignore' | 'pipe', ...Array<'ignore' | 'pipe'>];
      detached?: boolean;
    },
  ): ResultPromise<{ reject: false; buffer: false }> {
    this.spawnCount++;
    return execa(binary, argv, {
      reject: false,
      buffer: false,
      stdio: options.stdio,
      env: { PATH: CLEAN_PATH, ...options.env },
      extendEnv: false,
      detached: options.detached ?? false,
      cleanup: false,
    }) as unknown as ResultPromise<{ reject: false; buffer: false }>;
  }

  recordInvocation(invocation: Invocation): void {
    this.emit(invocation);
  }

  private emit(invocation: Invocation): void {
    for (const listener of this.listeners) listener(invocation);
  }
}
