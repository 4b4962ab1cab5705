import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { CappedChunks } from './capped-chunks.js';
import { killProcessGroup, type ProcessRunner } from './process-runner.js';
import type { OciProcess, OciSpec } from './oci.js';

/**
 * One method per runtime command, each: build argv, run, decode, return a typed value or throw a RuntimeError
 * carrying the runtime's own words. Nothing outside this file assembles a runtime argv.
 *
 * Only flags shared by runc and crun are used (`--root`, `--log-format json`, `state`, `list --format json`,
 * `exec --process --pid-file`, `kill`, `delete --force`), so `--runtime crun` works with the same adapter.
 *
 * Longer than runcd's other files on purpose: like go-runc's runc.go it is the one place that builds runtime argv
 * and reads runtime errors, and a reader checking "what does runcd ask runc" should find all of it here.
 */

export type RuntimeErrorKind =
  | 'not_found'
  | 'not_running'
  | 'already_running'
  | 'stopped'
  | 'paused'
  | 'not_stopped'
  | 'executable_not_found'
  | 'not_executable'
  | 'invalid_cwd'
  | 'invalid_user'
  | 'died'
  | 'timeout'
  | 'failed';

export class RuntimeError extends Error {
  constructor(
    readonly kind: RuntimeErrorKind,
    readonly runtimeMessage: string,
    readonly command: string,
    readonly exitCode: number,
  ) {
    super(runtimeMessage);
    this.name = 'RuntimeError';
  }
}

/** Ordered: the first pattern that matches runc's (or crun's) message decides the kind. */
const ERROR_PATTERNS: ReadonlyArray<[RegExp, RuntimeErrorKind]> = [
  [/executable file not found|exec: "[^"]*": (stat|no such file)/i, 'executable_not_found'],
  // runc's words when the process it was to exec is not a program: a directory, no execute bit, a noexec mount.
  [/exec: "[^"]*": (permission denied|is a directory|exec format error)/i, 'not_executable'],
  [/chdir to cwd .* failed/i, 'invalid_cwd'],
  [/uids and gids must be in range|unable to find (user|group)/i, 'invalid_user'],
  // The container died under an exec (a SIGKILL racing it): runc's init pipe breaks, or the namespaces to join
  // are gone with the init. The caller lost a race, not a runtime failure: 409 like an exec into a stopped one.
  [
    /init-p: (broken pipe|connection reset)|namespace path: lstat \/proc\/\d+\/ns\/|\/proc\/\d+\/ns\/\w+: no such file/i,
    'died',
  ],
  [/container( "[^"]*")? does not exist|no such container/i, 'not_found'],
  [/already running/i, 'already_running'],
  [/that is not stopped|not stopped/i, 'not_stopped'],
  [/paused/i, 'paused'],
  [/has stopped|in a stopped container|container is stopped|stopped container/i, 'stopped'],
  [/not running|is not running/i, 'not_running'],
];

export function classifyRuntimeMessage(message: string): RuntimeErrorKind {
  for (const [pattern, kind] of ERROR_PATTERNS) if (pattern.test(message)) return kind;
  return 'failed';
}

/**
 * With `--log-format json` runc reports errors as JSON lines (`{"level":"error","msg":...}`); crun prints plain
 * text. Take the last error-level message, or the last non-empty line when nothing parses.
 */
export function extractRuntimeMessage(output: string): string {
  const lines = output
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  let lastError: string | undefined;
  for (const line of lines) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if (entry.msg && (entry.level === 'error' || entry.level === 'fatal')) lastError = entry.msg;
    } catch {
      // not a JSON log line; fall through to the plain-text rule
    }
  }
  if (lastError !== undefined) return lastError;
  const plain = lines.filter((line) => !line.startsWith('{'));
  return (plain.at(-1) ?? lines.at(-1) ?? '').replace(/^(runc|crun): /, '');
}

export interface RuntimeState {
  ociVersion: string;
  id: string;
  pid: number;
  status: 'creating' | 'created' | 'running' | 'paused' | 'stopped';
  bundle: string;
  rootfs: string;
  created: string;
  owner: string;
  annotations?: Record<string, string>;
}

export interface RuntimeStats {
  cpu: { total: number; user: number; kernel: number };
  memory: { usage: number; limit: number; max: number };
  pids: { current: number; limit: number };
}

/** runc reports "unlimited" as the largest page-aligned int64; anything this large means no limit. */
export const UNLIMITED = 2 ** 62;

interface StatsEvent {
  type: string;
  data?: {
    cpu?: { usage?: { total?: number; user?: number; kernel?: number } };
    memory?: { usage?: { usage?: number; limit?: number; max?: number } };
    pids?: { current?: number; limit?: number };
  };
}

export function parseStatsEvent(line: string): RuntimeStats {
  const event = JSON.parse(line) as StatsEvent;
  if (event.type !== 'stats' || !event.data) throw new Error(`not a stats event: ${event.type}`);
  const { cpu, memory, pids } = event.data;
  return {
    cpu: { total: cpu?.usage?.total ?? 0, user: cpu?.usage?.user ?? 0, kernel: cpu?.usage?.kernel ?? 0 },
    memory: {
      usage: memory?.usage?.usage ?? 0,
      limit: memory?.usage?.limit ?? 0,
      max: memory?.usage?.max ?? 0,
    },
    pids: { current: pids?.current ?? 0, limit: pids?.limit ?? 0 },
  };
}

/** What `runc update` may change; each field present becomes one flag (runc and crun share these flags). */
export interface ResourceUpdate {
  memoryBytes?: number | undefined;
  cpuQuotaMicros?: number | undefined;
  cpuPeriodMicros?: number | undefined;
  pidsLimit?: number | undefined;
}

export function resourceUpdateArgs(resources: ResourceUpdate): string[] {
  const args: string[] = [];
  if (resources.memoryBytes !== undefined) args.push('--memory', String(resources.memoryBytes));
  if (resources.cpuPeriodMicros !== undefined) args.push('--cpu-period', String(resources.cpuPeriodMicros));
  if (resources.cpuQuotaMicros !== undefined) args.push('--cpu-quota', String(resources.cpuQuotaMicros));
  if (resources.pidsLimit !== undefined) args.push('--pids-limit', String(resources.pidsLimit));
  return args;
}

/**
 * Where a streamed exec's output goes. write() answers false when the reader is behind: the process's pipes are
 * then paused until drained(), so a slow reader slows the process instead of filling runcd's memory. `signal`
 * aborts when the reader has gone for good.
 */
export interface ExecOutput {
  write(stream: 'stdout' | 'stderr', chunk: Buffer): boolean;
  drained(): Promise<void>;
  readonly signal: AbortSignal;
}

export interface ExecOutcome {
  exitCode: number;
  stdout: string;
  stderr: string;
  truncated: boolean;
  timedOut: boolean;
}

export interface RuncOptions {
  binary: string;
  root: string;
  scratchDir: string;
  runner: ProcessRunner;
  commandTimeoutMs?: number;
  /** Deadline of an exec whose caller gave no timeoutSeconds, so that no runtime call is unbounded. */
  execTimeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_EXEC_TIMEOUT_MS = 24 * 60 * 60 * 1000;
const EXEC_KILL_GRACE_MS = 2_000;

export class Runc {
  readonly binary: string;
  readonly root: string;
  private readonly scratchDir: string;
  private readonly runner: ProcessRunner;
  private readonly timeoutMs: number;
  private readonly execTimeoutMs: number;

  private versionOutput: Promise<string> | undefined;
  /** Scratch directories of finished execs still being removed (awaited by settle() at shutdown). */
  private readonly removals = new Set<Promise<void>>();

  constructor(options: RuncOptions) {
    this.binary = options.binary;
    this.root = options.root;
    this.scratchDir = options.scratchDir;
    this.runner = options.runner;
    this.timeoutMs = options.commandTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.execTimeoutMs = options.execTimeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
  }

  /**
   * An exec's scratch directory, removed off the request's path: three unlinks and an rmdir took ~0.9 ms of the
   * event loop per exec here (CPU profile of a lifecycle loop), for files nothing reads again. The spawn helper
   * removes it after the answer (ProcessRunner.removeTree); the names are unique, so nothing can race it.
   */
  private discardScratch(dir: string): void {
    const removal = this.runner.removeTree(dir).finally(() => this.removals.delete(removal));
    this.removals.add(removal);
  }

  /** Lets pending scratch removals finish (at shutdown). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.removals]);
  }

  /**
   * Removes what execs of a previous run left in the scratch dir (a runcd killed during an exec); called at
   * startup, before anything runs.
   */
  sweepScratch(): void {
    for (const name of readdirSync(this.scratchDir)) {
      if (name.startsWith('exec-')) rmSync(join(this.scratchDir, name), { recursive: true, force: true });
    }
  }

  /** Global flags, also handed to conmon as `--runtime-arg`s so its `runc create` sees the same root. */
  globalArgs(): string[] {
    return [`--root=${this.root}`, '--log-format=json'];
  }

  /**
   * The runtime's own default config.json (`runc spec`), the starting point of every config runcd generates.
   * runc writes it into a directory (and refuses one that already has a config.json), so a fresh one is used.
   */
  async spec(): Promise<OciSpec> {
    const dir = await mkdtemp(join(this.scratchDir, 'spec-'));
    try {
      await this.invoke('spec', ['--bundle', dir]);
      return JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as OciSpec;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Changes a live container's cgroup limits (`runc update`); only the limits given are touched. */
  async update(id: string, resources: ResourceUpdate): Promise<void> {
    await this.invoke('update', [...resourceUpdateArgs(resources), id]);
  }

  /**
   * `runc --version`, asked once: the binary does not change under a running runcd, and every reader (the spec
   * version containers report, /system/info, the runtime advisories) wants the same text. A failed call is not
   * kept, so a runtime installed after startup is seen on the next read. `fresh` asks the binary again (the
   * readiness probe's question is whether it still answers).
   */
  versionText(options: { fresh?: boolean } = {}): Promise<string> {
    if (options.fresh) this.versionOutput = undefined;
    this.versionOutput ??= this.runner
      .run(this.binary, ['--version'], { timeoutMs: 10_000 })
      .then((result) => (result.exitCode === 0 ? result.stdout : ''));
    void this.versionOutput.then(
      (text) => {
        if (text === '') this.versionOutput = undefined;
      },
      () => (this.versionOutput = undefined),
    );
    return this.versionOutput;
  }

  async version(options: { fresh?: boolean } = {}): Promise<string> {
    return (await this.versionText(options)).split('\n')[0]?.trim() ?? '';
  }

  /**
   * The OCI runtime-spec version the runtime implements: what `runc state` reports as `ociVersion` for every
   * container, whatever its bundle says (`runc --version` prints it as `spec: 1.0.2-dev`, crun as `spec: 1.0.0`).
   */
  async specVersion(): Promise<string | undefined> {
    return /^spec: (\S+)$/m.exec(await this.versionText())?.[1];
  }

  async state(id: string): Promise<RuntimeState> {
    const stdout = await this.invoke('state', [id]);
    return JSON.parse(stdout) as RuntimeState;
  }

  async list(): Promise<RuntimeState[]> {
    const stdout = await this.invoke('list', ['--format', 'json']);
    const parsed = JSON.parse(stdout.trim() || 'null') as RuntimeState[] | null;
    return parsed ?? [];
  }

  async start(id: string): Promise<void> {
    await this.invoke('start', [id]);
  }

  /** runc's syntax puts the signal after the id; the id is validated so it can never read as a flag. */
  async kill(id: string, signal: number): Promise<void> {
    await this.invoke('kill', [id, String(signal)]);
  }

  async delete(id: string, options: { force?: boolean } = {}): Promise<void> {
    await this.invoke('delete', [...(options.force ? ['--force'] : []), id]);
  }

  async pause(id: string): Promise<void> {
    await this.invoke('pause', [id]);
  }

  async resume(id: string): Promise<void> {
    await this.invoke('resume', [id]);
  }

  /** Host pids of every process in the container (`runc ps --format json`). */
  async ps(id: string): Promise<number[]> {
    const stdout = await this.invoke('ps', ['--format', 'json', id]);
    return (JSON.parse(stdout.trim() || 'null') as number[] | null) ?? [];
  }

  /** One cgroup statistics snapshot (`runc events --stats`). */
  async stats(id: string): Promise<RuntimeStats> {
    const stdout = await this.invoke('events', ['--stats', id]);
    return parseStatsEvent(stdout);
  }

  /**
   * Streams a snapshot every `intervalSeconds` (`runc events --interval`) until the container stops or `stop()` is
   * called. runc ends the stream itself when the container goes away.
   */
  async streamStats(
    id: string,
    intervalSeconds: number,
    onStats: (stats: RuntimeStats) => void,
  ): Promise<{ done: Promise<void>; stop: () => void }> {
    const argv = [...this.globalArgs(), 'events', '--interval', `${intervalSeconds}s`, id];
    // A stream lives as long as its reader: it counts with the exec sessions, not the short commands.
    const { child } = await this.runner.spawn(this.binary, argv, {
      stdio: ['ignore', 'pipe', 'ignore'],
      longLived: true,
    });
    let buffer = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      buffer += chunk;
      let newline;
      while ((newline = buffer.indexOf('\n')) !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        try {
          onStats(parseStatsEvent(line));
        } catch {
          // runc also emits non-stats events (e.g. oom); they carry no snapshot
        }
      }
    });
    return {
      done: child.then(() => undefined),
      stop: () => killProcessGroup(child.pid),
    };
  }

  /**
   * `runc exec --process FILE` with a full OCI process, as go-runc does. runc's own log goes to a file so the
   * process's stderr stays the process's; a failure of runc itself (exit 255 with an error in that log) becomes a
   * RuntimeError, any other exit status is the process's own.
   */
  async exec(
    id: string,
    process: OciProcess,
    options: {
      timeoutMs?: number | undefined;
      outputLimitBytes: number;
      /** Streaming callers (the Docker API's exec) get each chunk as the process writes it, uncapped. */
      output?: ExecOutput | undefined;
      /** The process's stdin, as `runc exec` passes its own: read as the process reads, EOF at its end. */
      stdin?: Readable | undefined;
    },
  ): Promise<ExecOutcome> {
    // Small scratch files in runcd's own state dir: synchronous, like conmon.ts's (see there for why).
    const dir = mkdtempSync(join(this.scratchDir, 'exec-'));
    const processFile = join(dir, 'process.json');
    const pidFile = join(dir, 'pid');
    const logFile = join(dir, 'runc.log');
    writeFileSync(processFile, JSON.stringify(process), { mode: 0o600 });
    const argv = [
      `--root=${this.root}`,
      '--log-format=json',
      `--log=${logFile}`,
      'exec',
      '--process',
      processFile,
      '--pid-file',
      pidFile,
      id,
    ];
    const started = performance.now();
    if (!options.stdin && !options.output) {
      return this.execCaptured(argv, dir, pidFile, logFile, started, options);
    }
    let child;
    try {
      ({ child } = await this.runner.spawn(this.binary, argv, {
        stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        longLived: true,
      }));
    } catch (error) {
      this.discardScratch(dir);
      throw error;
    }
    if (options.stdin && child.stdin) {
      const input = child.stdin;
      // A process that exits (or closes stdin) without reading it all is not an error, as in a shell pipeline.
      input.on('error', () => undefined);
      options.stdin.on('error', () => input.destroy());
      options.stdin.pipe(input);
    }
    const stdout = new CappedChunks(options.outputLimitBytes);
    const stderr = new CappedChunks(options.outputLimitBytes);
    const output = options.output;
    if (output) {
      const pipes = [child.stdout, child.stderr].filter((pipe) => pipe !== null);
      const forward = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
        if (output.write(stream, chunk)) return;
        for (const pipe of pipes) pipe.pause();
        void output.drained().then(() => {
          if (!output.signal.aborted) for (const pipe of pipes) pipe.resume();
        });
      };
      child.stdout?.on('data', forward('stdout'));
      child.stderr?.on('data', forward('stderr'));
      // runc passes these pipes to the process itself (no terminal, no copying in between), so closing them is
      // what a shell pipeline does when its reader quits: the process's next write fails with EPIPE, or SIGPIPE
      // ends it, and runc exec exits with its status. Until then (a process that stays silent) it runs on.
      const release = () => {
        for (const pipe of pipes) pipe.destroy();
      };
      if (output.signal.aborted) release();
      else output.signal.addEventListener('abort', release, { once: true });
    } else {
      child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
      child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    }

    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      // runc exec forwards catchable signals to the process, but SIGKILL cannot be forwarded: kill the
      // process itself by the pid runc wrote, then runc exec exits with its status.
      void killExecProcess(pidFile, child.pid);
    }, options.timeoutMs ?? this.execTimeoutMs);
    try {
      const result = await child;
      const durationMs = performance.now() - started;
      const exitCode =
        typeof result.exitCode === 'number'
          ? result.exitCode
          : result.signal
            ? 128 + signalNumber(result.signal)
            : -1;
      this.runner.recordInvocation({ binary: this.binary, argv, exitCode, durationMs, timedOut });
      const runcLog = readLog(logFile);
      const runcMessage = extractRuntimeMessage(runcLog);
      if (exitCode === 255 && runcMessage) {
        throw new RuntimeError(classifyRuntimeMessage(runcMessage), runcMessage, 'exec', exitCode);
      }
      return {
        exitCode,
        stdout: stdout.text(),
        stderr: stderr.text(),
        truncated: stdout.truncated || stderr.truncated,
        timedOut,
      };
    } finally {
      clearTimeout(timer);
      this.discardScratch(dir);
    }
  }

  /**
   * An exec whose output is only wanted whole (POST /containers/ID/exec): run through ProcessRunner.capture, so
   * runcd's event loop is not held by the fork. The deadline is kept here, as for a streamed exec: it kills the
   * exec'd process, not runc.
   */
  private async execCaptured(
    argv: string[],
    dir: string,
    pidFile: string,
    logFile: string,
    started: number,
    options: { timeoutMs?: number | undefined; outputLimitBytes: number },
  ): Promise<ExecOutcome> {
    let runcPid: number | undefined;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void killExecProcess(pidFile, runcPid);
    }, options.timeoutMs ?? this.execTimeoutMs);
    try {
      const result = await this.runner.capture(this.binary, argv, {
        outputLimitBytes: options.outputLimitBytes,
        longLived: true,
        onSpawn: (pid) => (runcPid = pid),
      });
      const exitCode =
        result.exitCode !== undefined
          ? result.exitCode
          : result.signal
            ? 128 + signalNumber(result.signal)
            : -1;
      const durationMs = performance.now() - started;
      this.runner.recordInvocation({ binary: this.binary, argv, exitCode, durationMs, timedOut });
      const runcMessage = extractRuntimeMessage(readLog(logFile));
      if (exitCode === 255 && runcMessage) {
        throw new RuntimeError(classifyRuntimeMessage(runcMessage), runcMessage, 'exec', exitCode);
      }
      return {
        exitCode,
        stdout: result.stdout,
        stderr: result.stderr,
        truncated: result.truncated,
        timedOut,
      };
    } finally {
      clearTimeout(timer);
      this.discardScratch(dir);
    }
  }

  private async invoke(command: string, args: string[]): Promise<string> {
    const result = await this.runner.run(this.binary, [...this.globalArgs(), command, ...args], {
      timeoutMs: this.timeoutMs,
    });
    if (result.timedOut) {
      throw new RuntimeError(
        'timeout',
        `${this.binary} ${command} did not finish within ${this.timeoutMs} ms and was killed`,
        command,
        -1,
      );
    }
    if (result.exitCode !== 0) {
      const message =
        extractRuntimeMessage(result.stderr) || `${command} exited with status ${result.exitCode}`;
      throw new RuntimeError(classifyRuntimeMessage(message), message, command, result.exitCode);
    }
    return result.stdout;
  }
}

function readLog(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  return osConstants.signals[signal] ?? 0;
}

async function killExecProcess(pidFile: string, runcPid: number | undefined): Promise<void> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  try {
    if (pid > 0) process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
  // The exec'd process runs in a session of its own (runc init calls setsid), so the group kill below reaches
  // only runc exec and whatever it forked, in case runc itself is what hangs.
  setTimeout(() => killProcessGroup(runcPid), EXEC_KILL_GRACE_MS).unref();
}
