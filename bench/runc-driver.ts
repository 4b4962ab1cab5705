import { execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isProcessRunning } from '../src/runtime/procfs.js';
import { BenchError, type BundleKind, type LifecycleDriver } from './drivers.js';
import { RUNC, type Workspace } from './workspace.js';

/** How often the raw runc path looks at /proc while it waits for an init to die. */
export const RAW_WAIT_POLL_MS = 1;

/**
 * The runc CLI alone, as a script would drive it: one `runc` process per step, spawned with node:child_process,
 * against a private --root. There is no monitor, so nobody reaps the init or keeps its exit status: "wait
 * stopped" polls /proc/PID/stat every millisecond until the init is gone or a zombie, the same test `runc state`
 * applies, and the exit code is unknowable (null).
 */
export class RuncCliDriver implements LifecycleDriver {
  readonly name = 'runc';
  readonly root: string;
  private readonly scratch: string;
  private readonly pids = new Map<string, number>();

  constructor(
    workspace: Workspace,
    private readonly bundles: Record<BundleKind, string>,
    name = 'runc-cli',
  ) {
    this.root = workspace.runcRoot(name);
    this.scratch = workspace.path(`${name}-files`);
  }

  /**
   * runc create hands its own stdio to the container's init, so it runs with all three closed (a pipe would stay
   * open for the container's lifetime); its errors go to a log file instead.
   */
  async create(id: string, kind: BundleKind = 'sleep'): Promise<void> {
    const pidFile = join(this.scratch, `${id}.pid`);
    const logFile = join(this.scratch, `${id}.log`);
    const child = spawn(
      RUNC,
      [
        `--root=${this.root}`,
        `--log=${logFile}`,
        '--log-format=json',
        'create',
        '--bundle',
        this.bundles[kind],
        '--pid-file',
        pidFile,
        id,
      ],
      { stdio: 'ignore' },
    );
    const exitCode = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => resolve(code));
    });
    if (exitCode !== 0) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      throw new BenchError(`runc create ${id} exited ${exitCode}: ${log.trim()}`);
    }
    this.pids.set(id, Number((await readFile(pidFile, 'utf8')).trim()));
  }

  async start(id: string): Promise<void> {
    await this.runc('start', id);
  }

  async state(id: string): Promise<void> {
    JSON.parse(await this.runc('state', id));
  }

  async pid(id: string): Promise<number> {
    const pid = this.pids.get(id);
    if (pid === undefined) throw new BenchError(`no pid for ${id}`);
    return pid;
  }

  async list(): Promise<number> {
    return (
      (JSON.parse((await this.runc('list', '--format', 'json')).trim() || 'null') as unknown[] | null) ?? []
    ).length;
  }

  async exec(id: string): Promise<void> {
    await this.runc('exec', id, 'true');
  }

  async kill(id: string): Promise<void> {
    await this.runc('kill', id, 'KILL');
  }

  async waitStopped(id: string): Promise<number | null> {
    const pid = this.pids.get(id);
    if (pid === undefined) throw new BenchError(`no pid for ${id}`);
    while (isProcessRunning(pid)) await new Promise((resolve) => setTimeout(resolve, RAW_WAIT_POLL_MS));
    return null;
  }

  async stop(id: string): Promise<void> {
    await this.runc('kill', id, 'TERM');
    await this.waitStopped(id);
  }

  async delete(id: string): Promise<void> {
    await this.runc('delete', id);
    this.pids.delete(id);
  }

  async remove(id: string): Promise<void> {
    this.pids.delete(id);
    await this.runc('delete', '--force', id);
  }

  private runc(...args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(RUNC, [`--root=${this.root}`, ...args], (error, stdout, stderr) => {
        if (error) reject(new BenchError(`runc ${args.join(' ')}: ${stderr.trim() || error.message}`));
        else resolve(stdout);
      });
    });
  }
}
