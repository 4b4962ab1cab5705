import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { resizeTerminal as writeTerminalSize } from './attach-socket.js';
import { startExecSession, type StartedExecSession } from './exec-session.js';
import type { OciProcess, OciSpec } from './oci.js';
import { isProcessRunning } from './procfs.js';
import { killProcessGroup, type ProcessRunner } from './process-runner.js';
import { RuntimeError, classifyRuntimeMessage, extractRuntimeMessage, type Runc } from './runc.js';
import {
  openSyncChannel,
  openSyncReader,
  readSyncMessage,
  SyncFifoPool,
  type SyncMessage,
} from './sync-fifo.js';

/** What of conmon's own stderr is kept for an error message. */
const CONMON_STDERR_LIMIT_BYTES = 64 * 1024;
/** How long a failed create waits for conmon's exit to read what it wrote. */
const CONMON_STDERR_WAIT_MS = 2_000;
/** A deleted container's directory, moved aside to be removed after the answer (container ids start with a letter or digit). */
const REMOVING_PREFIX = '.removing-';

/**
 * conmon is each container's parent: it runs `runc create`, stays as the init's parent (so the exit status is
 * not lost to reparenting), writes the exit code to `<exitDir>/<id>` and `<persistDir>/exit`, marks OOM kills
 * with `<persistDir>/oom`, and owns the container's stdout/stderr (k8s-file log). conmon double-forks and calls
 * setsid, so killing runcd (or its process group) never touches the monitor or the container.
 *
 * The files here are small and in runcd's own state dir, so they are read, written and removed synchronously:
 * each async fs call is a round trip through libuv's thread pool (a readFile is four: open, fstat, read,
 * close), which cost several milliseconds per call on a busy machine, on every step of a lifecycle. Only the
 * container's directory, whose log can be large, is removed asynchronously.
 */

export interface ContainerFiles {
  dir: string;
  /** runcd's own copy of the bundle: the validated config.json is what runc reads (rootfs stays the caller's). */
  bundleDir: string;
  bundleConfig: string;
  log: string;
  pidFile: string;
  conmonPidFile: string;
  runtimeLog: string;
  exitFile: string;
  persistExitFile: string;
  oomFile: string;
  /** conmon's sync channel (see sync-fifo.ts); kept for the container's life, so restarts reuse it. */
  syncFifo: string;
}

/**
 * How a container's process is connected, read from runcd's checked copy of its config.json: a terminal (runc's
 * own pty, whose master conmon holds) comes with a stdin that stays open across attaches; without one the
 * process has no stdin (/dev/null) and its output goes to the log and to attached clients.
 */
export interface ContainerStdio {
  terminal: boolean;
  stdin: boolean;
}

export interface ExitRecord {
  exitCode: number;
  oomKilled: boolean;
  finishedAt: string;
}

export interface ConmonOptions {
  binary: string;
  runtimeBinary: string;
  stateDir: string;
  runc: Runc;
  runner: ProcessRunner;
  syncTimeoutMs?: number;
}

export class Conmon {
  readonly binary: string;
  readonly exitDir: string;
  private readonly containersDir: string;
  private readonly socketDir: string;
  private readonly sessionsDir: string;
  private readonly options: ConmonOptions;
  private readonly fifos: SyncFifoPool;
  /** Deleted containers' directories being removed in the background. */
  private readonly removals = new Set<Promise<void>>();

  constructor(options: ConmonOptions) {
    this.options = options;
    this.binary = options.binary;
    this.exitDir = join(options.stateDir, 'exits');
    this.containersDir = join(options.stateDir, 'containers');
    this.socketDir = join(options.stateDir, 'sock');
    this.sessionsDir = join(options.stateDir, 'sessions');
    this.fifos = new SyncFifoPool(options.runner, join(options.stateDir, 'fifos'));
  }

  async prepare(): Promise<void> {
    for (const dir of [this.exitDir, this.containersDir, this.socketDir, this.sessionsDir]) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    }
    // What a runcd killed during a background removal left.
    for (const name of readdirSync(this.containersDir)) {
      if (name.startsWith(REMOVING_PREFIX))
        rmSync(join(this.containersDir, name), { recursive: true, force: true });
    }
    await this.endOrphanedSessions();
    await this.fifos.prepare();
  }

  /**
   * An interactive exec session (exec-session.ts): its own conmon runs `runc exec` with a terminal or a stdin and
   * stays the process's parent. `attach` connects to the session's attach socket before the process starts, so
   * no output is lost; the session's files are removed once its exit code is in.
   */
  async startExecSession(
    containerId: string,
    sessionId: string,
    process: OciProcess,
    io: { tty: boolean; stdin: boolean },
    attach: (dir: string) => Promise<void>,
  ): Promise<StartedExecSession & { dir: string }> {
    const dir = join(this.sessionsDir, sessionId);
    mkdirSync(dir, { mode: 0o700 });
    const syncFifo = join(dir, 'sync.fifo');
    try {
      await this.fifos.place(syncFifo);
      const started = await startExecSession(
        {
          conmonBinary: this.binary,
          runtimeBinary: this.options.runtimeBinary,
          runtimeArgs: this.options.runc.globalArgs(),
          runner: this.options.runner,
          timeoutMs: this.options.syncTimeoutMs ?? 60_000,
        },
        { containerId, sessionId, dir, syncFifo, process, tty: io.tty, stdin: io.stdin },
        attach,
      );
      void started.exited.finally(() => rmSync(dir, { recursive: true, force: true }));
      return { ...started, dir };
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /**
   * Exec sessions a killed runcd left: their client went with it, so their process ends as a hung-up terminal's
   * would (SIGKILL here: nobody is left to see it end), and their files go. The process is killed only while its
   * parent is still that session's conmon, so a pid reused since can never be hit.
   */
  private async endOrphanedSessions(): Promise<void> {
    for (const name of readdirSync(this.sessionsDir)) {
      const dir = join(this.sessionsDir, name);
      const conmonPid = Number(readSmallFile(join(dir, 'conmon.pid')).trim());
      const pid = Number(readSmallFile(join(dir, 'pidfile')).trim());
      if (conmonPid > 0 && pid > 0 && parentOf(pid) === conmonPid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
      // conmon writes the exit into the directory as it goes: wait for it to be gone (briefly), then remove.
      for (let waited = 0; conmonPid > 0 && isProcessRunning(conmonPid) && waited < 2_000; waited += 20) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 25 });
      } catch {
        // left for the next start
      }
    }
  }

  /** Lets the removals of deleted containers' directories finish (at shutdown). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.removals]);
  }

  filesFor(id: string): ContainerFiles {
    const dir = join(this.containersDir, id);
    return {
      dir,
      bundleDir: join(dir, 'bundle'),
      bundleConfig: join(dir, 'bundle', 'config.json'),
      log: join(dir, 'ctr.log'),
      pidFile: join(dir, 'pidfile'),
      conmonPidFile: join(dir, 'conmon.pid'),
      runtimeLog: join(dir, 'runtime.log'),
      exitFile: join(this.exitDir, id),
      persistExitFile: join(dir, 'exit'),
      oomFile: join(dir, 'oom'),
      syncFifo: join(dir, 'sync.fifo'),
    };
  }

  async version(): Promise<string> {
    const result = await this.options.runner.run(this.binary, ['--version'], { timeoutMs: 10_000 });
    return result.stdout.split('\n')[0]?.trim() ?? '';
  }

  /**
   * Spawns conmon, which runs `runc create`. Resolves with the container's init pid once conmon reports it on
   * the sync FIFO (`{"data": PID}`); a negative value comes with runc's message and becomes a RuntimeError.
   *
   * `runtimeConfig` is the already-validated config.json. It is written into a bundle directory only root can
   * write, and that directory is what runc gets, so what runc reads is byte for byte what was checked: a caller
   * who rewrites their config.json after the check changes nothing. Without it (a restart), the copy written by
   * the first create is used again.
   */
  async create(id: string, runtimeConfig?: string): Promise<{ pid: number; conmonPid: number }> {
    const files = this.filesFor(id);
    await this.clearExit(id);
    mkdirSync(files.bundleDir, { recursive: true, mode: 0o700 });
    if (runtimeConfig !== undefined) {
      writeFileSync(files.bundleConfig, runtimeConfig, { mode: 0o600 });
    } else if (!existsSync(files.bundleConfig)) {
      throw new RuntimeError(
        'failed',
        `runcd's checked copy of config.json for "${id}" is missing`,
        'create',
        -1,
      );
    }
    const bundle = files.bundleDir;
    const stdio = stdioOfConfig(runtimeConfig ?? readSmallFile(files.bundleConfig));
    const argv = [
      '--api-version',
      '1',
      '-c',
      id,
      '-u',
      id,
      '-n',
      id,
      '-r',
      this.options.runtimeBinary,
      '-b',
      bundle,
      '-p',
      files.pidFile,
      '--exit-dir',
      this.exitDir,
      '--persist-dir',
      files.dir,
      '-l',
      `k8s-file:${files.log}`,
      '--conmon-pidfile',
      files.conmonPidFile,
      '--socket-dir-path',
      this.socketDir,
      // With a terminal conmon passes runc a console socket and keeps the pty's master, so the terminal lives as
      // long as the container, whatever happens to runcd. `-i` gives the process a stdin fed from the attach
      // socket; `--leave-stdin-open` keeps it open when a client leaves (else the first detach would close it
      // for good and later attaches could not type: Docker's StdinOnce=false).
      ...(stdio.terminal ? ['-t'] : []),
      ...(stdio.stdin ? ['-i', '--leave-stdin-open'] : []),
      '--log-level',
      'error',
      ...this.options.runc.globalArgs().flatMap((arg) => ['--runtime-arg', arg]),
      '--runtime-arg',
      `--log=${files.runtimeLog}`,
    ];
    if (!existsSync(files.syncFifo)) await this.fifos.place(files.syncFifo);
    const channel = openSyncChannel(files.syncFifo);
    const started = performance.now();
    let conmon;
    try {
      // The sync FIFO (fd 3) is all conmon gets beyond stdio, and it hands runc nothing else.
      conmon = await this.options.runner.startDaemonizing(this.binary, argv, {
        env: { _OCI_SYNCPIPE: '3' },
        // conmon drops files (an `oom` marker among them) into its working directory: keep them with the container.
        cwd: files.dir,
        syncFifo: files.syncFifo,
        stderrLimitBytes: CONMON_STDERR_LIMIT_BYTES,
      });
    } catch (error) {
      closeSync(channel.reader);
      throw error;
    } finally {
      // conmon has its own copy now: with runcd's closed, conmon's exit is the reader's EOF.
      closeSync(channel.conmonEnd);
    }
    let message: SyncMessage | undefined;
    try {
      message = await readSyncMessage(channel.reader, this.options.syncTimeoutMs ?? 60_000);
    } finally {
      // The create is over either way: the monitor lives on by design, so it no longer counts as a runtime call.
      conmon.release();
    }
    // No answer in time: kill conmon's process group (conmon and a runc create it started before daemonizing).
    if (message === undefined) killProcessGroup(conmon.pid);
    /** What conmon itself wrote before it exited (it does, at once, once its monitor is forked or it failed). */
    const conmonStderr = async (): Promise<string> => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), CONMON_STDERR_WAIT_MS);
      });
      const exit = await Promise.race([conmon.exited.catch(() => undefined), late]);
      clearTimeout(timer);
      return exit?.stderr.trim() ?? '';
    };
    const conmonPid = Number(readSmallFile(files.conmonPidFile).trim()) || 0;
    const exitCode = message && message.data > 0 ? 0 : 1;
    this.options.runner.recordInvocation({
      binary: this.binary,
      argv,
      exitCode,
      durationMs: performance.now() - started,
      timedOut: message === undefined,
    });
    if (message === undefined) {
      const stderr = await conmonStderr();
      throw new RuntimeError(
        'timeout',
        `conmon did not report the container's pid${stderr ? `: ${stderr}` : ''}`,
        'create',
        -1,
      );
    }
    if (message.data <= 0) {
      const runtimeLog = readSmallFile(files.runtimeLog);
      const text =
        cleanRuntimeMessage(message.message ?? '') ||
        extractRuntimeMessage(runtimeLog) ||
        (await conmonStderr()) ||
        'runtime create failed';
      throw new RuntimeError(classifyRuntimeMessage(text), text, 'create', message.data);
    }
    return { pid: message.data, conmonPid };
  }

  /**
   * Where the container's attach socket (`attach`) and terminal control FIFO (`ctl`) are: conmon's `-b`
   * directory. They exist from the create on (conmon makes them before `runc create`) until conmon exits.
   */
  attachDir(id: string): string {
    return this.filesFor(id).bundleDir;
  }

  /** The container's terminal and stdin, as its conmon was started with them. */
  stdioOf(id: string): ContainerStdio {
    return stdioOfConfig(readSmallFile(this.filesFor(id).bundleConfig));
  }

  /** A new size for a terminal container's pty, through its conmon (works while created too). */
  resizeTerminal(id: string, rows: number, cols: number): void {
    writeTerminalSize(this.attachDir(id), rows, cols);
  }

  async readExit(id: string): Promise<ExitRecord | undefined> {
    const files = this.filesFor(id);
    for (const path of [files.exitFile, files.persistExitFile]) {
      const record = await readExitFile(path, files.oomFile);
      if (record) return record;
    }
    return undefined;
  }

  async conmonPid(id: string): Promise<number | undefined> {
    const text = readSmallFile(this.filesFor(id).conmonPidFile);
    const pid = Number(text.trim());
    return pid > 0 ? pid : undefined;
  }

  /** Whether the container's conmon is still there to record its exit. */
  async monitorAlive(id: string): Promise<boolean> {
    const pid = await this.conmonPid(id);
    return pid !== undefined && isMonitorAlive(pid, id);
  }

  /**
   * For a create runcd was killed in: conmon's report of the init pid, which stays in the sync FIFO for as long
   * as conmon lives. Waits while conmon is still running `runc create`; undefined when conmon exited without a
   * report (its end of the FIFO closed) or none came in time.
   */
  async awaitInterruptedCreate(id: string): Promise<{ pid: number } | { error: string } | undefined> {
    const reader = openSyncReader(this.filesFor(id).syncFifo);
    if (reader === undefined) return undefined;
    const message = await readSyncMessage(reader, this.options.syncTimeoutMs ?? 60_000);
    if (message === undefined) return undefined;
    return message.data > 0 ? { pid: message.data } : { error: cleanRuntimeMessage(message.message ?? '') };
  }

  /**
   * After the container is gone conmon writes the exit file and exits. Waiting for that before removing files
   * keeps a late exit file from being mistaken for the exit of a new container that reuses the id.
   */
  async waitForMonitorExit(id: string, timeoutMs = 5_000): Promise<boolean> {
    const pid = await this.conmonPid(id);
    if (pid === undefined) return true;
    const deadline = Date.now() + timeoutMs;
    // conmon is not runcd's child, so there is nothing to wait on but /proc. It exits a moment after writing the
    // exit file: look again after 1 ms, then back off to 10 ms for a monitor that takes longer (a force delete).
    for (let delayMs = 1; ; delayMs = Math.min(delayMs * 2, 10)) {
      if (!isMonitorAlive(pid, id)) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }

  /** Before a restart: forget the old instance's exit and pids, keep its log (as `docker restart` does). */
  async clearExit(id: string): Promise<void> {
    const files = this.filesFor(id);
    for (const path of [
      files.exitFile,
      files.persistExitFile,
      files.oomFile,
      files.pidFile,
      files.conmonPidFile,
    ]) {
      rmSync(path, { force: true });
    }
    rmSync(join(this.socketDir, id), { recursive: true, force: true });
  }

  /**
   * The directory is moved aside at once (one rename) and removed after the delete has answered: nothing reads it
   * any more, a recursive removal is some twenty thread-pool round trips (2 ms here) and a large log takes longer.
   * The id is free again as soon as this returns; a runcd killed meanwhile removes the rest at its next start.
   */
  async removeFiles(id: string): Promise<void> {
    const files = this.filesFor(id);
    rmSync(files.exitFile, { force: true });
    rmSync(join(this.socketDir, id), { recursive: true, force: true });
    const doomed = join(this.containersDir, `${REMOVING_PREFIX}${id}-${randomBytes(4).toString('hex')}`);
    try {
      renameSync(files.dir, doomed);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      await rm(files.dir, { recursive: true, force: true });
      return;
    }
    const removal = this.options.runner.removeTree(doomed).finally(() => this.removals.delete(removal));
    this.removals.add(removal);
  }
}

function stdioOfConfig(configText: string): ContainerStdio {
  let terminal = false;
  try {
    terminal = (JSON.parse(configText) as OciSpec).process?.terminal === true;
  } catch {
    // an unreadable copy: create itself reports it; here it is a container without a terminal
  }
  return { terminal, stdin: terminal };
}

function cleanRuntimeMessage(message: string): string {
  return message.trim().replace(/^(runc|crun) create failed: /, '');
}

/** The parent pid of `pid` from /proc, or 0 when it is gone. */
function parentOf(pid: number): number {
  const stat = readSmallFile(`/proc/${pid}/stat`);
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) || 0;
}

/** A small file's text, or '' when it does not exist (or cannot be read). */
function readSmallFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

async function readExitFile(path: string, oomFile: string): Promise<ExitRecord | undefined> {
  // conmon may still be writing the file when the watcher fires; an empty read is retried briefly.
  for (let attempt = 0; attempt < 20; attempt++) {
    let text: string;
    let modified: Date;
    try {
      modified = statSync(path).mtime;
      text = readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
    const trimmed = text.trim();
    if (/^-?\d+$/.test(trimmed)) {
      return {
        exitCode: Number(trimmed),
        oomKilled: existsSync(oomFile),
        finishedAt: modified.toISOString(),
      };
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return undefined;
}

function isMonitorAlive(pid: number, id: string): boolean {
  // Where PID 1 does not reap, an exited conmon lingers as a zombie: isProcessRunning counts that as gone.
  if (!isProcessRunning(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(id);
  } catch {
    return false;
  }
}
