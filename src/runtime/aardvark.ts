import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProcessRunner } from './process-runner.js';

/**
 * The aardvark-dns adapter: starts, reloads and stops the one DNS server that answers container names on runcd's
 * user networks. Facts it relies on (aardvark-dns 1.4.0, Debian's build, read from its source and measured here):
 * - `aardvark-dns --config DIR --port 53 --filter-search-domain .dns.runcd run` forks; the parent exits once the
 *   child has written DIR/aardvark.pid; the child calls setsid(), so it outlives runcd like conmon does.
 * - It serves every file in DIR (one per network: first line the addresses to listen on, then one line per
 *   container), UDP only, and re-reads them all on SIGHUP. One malformed file stops the whole server, so files
 *   are only ever renamed into DIR whole (see ContainerDns).
 * - Its SIGHUP handler is installed after the pid file is written: a SIGHUP in between would kill it (the default
 *   action), so a reload first waits until /proc/PID/status shows SIGHUP caught (SigCgt bit 0).
 * - With no file left it would exit at the next SIGHUP; runcd stops it itself instead (SIGTERM), under its lock,
 *   so a start never races an exit.
 */
export interface AardvarkOptions {
  runner: ProcessRunner;
  binary: string;
  /** The directory of network files (and aardvark's pid file). */
  configDir: string;
  /** The search domain containers get; a query under it is answered here or refused, never forwarded. */
  searchDomain: string;
  port?: number;
  timeoutMs?: number;
}

const PID_FILE = 'aardvark.pid';
const DEFAULT_TIMEOUT_MS = 10_000;

export class AardvarkError extends Error {
  override name = 'AardvarkError';
}

export class Aardvark {
  constructor(private readonly options: AardvarkOptions) {}

  get configDir(): string {
    return this.options.configDir;
  }

  /** The pid of the aardvark-dns serving this config directory, if one runs (a stale pid file is removed). */
  async running(): Promise<number | undefined> {
    const pidFile = join(this.options.configDir, PID_FILE);
    const text = await readFile(pidFile, 'utf8').catch(() => undefined);
    const pid = Number(text?.trim());
    if (!Number.isInteger(pid) || pid <= 0) {
      if (text !== undefined) await rm(pidFile, { force: true });
      return undefined;
    }
    if (await this.isOurs(pid)) return pid;
    await rm(pidFile, { force: true });
    return undefined;
  }

  async start(): Promise<number> {
    const port = String(this.options.port ?? 53);
    const result = await this.options.runner.run(
      this.options.binary,
      [
        '--config',
        this.options.configDir,
        '--port',
        port,
        '--filter-search-domain',
        `.${this.options.searchDomain}`,
        'run',
      ],
      { timeoutMs: this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS },
    );
    if (result.exitCode !== 0) {
      throw new AardvarkError(
        `${this.options.binary} run exited with ${result.exitCode}: ${result.stderr.trim() || result.stdout.trim()}`,
      );
    }
    const pid = await this.running();
    if (pid === undefined) throw new AardvarkError(`${this.options.binary} run left no running server`);
    return pid;
  }

  /** SIGHUP: re-read every file. */
  async reload(pid: number): Promise<void> {
    const deadline = Date.now() + (this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    while (!(await catchesSighup(pid))) {
      if (!(await this.isOurs(pid))) throw new AardvarkError(`aardvark-dns (pid ${pid}) is gone`);
      if (Date.now() > deadline) throw new AardvarkError(`aardvark-dns (pid ${pid}) never caught SIGHUP`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    process.kill(pid, 'SIGHUP');
  }

  /** SIGTERM (SIGKILL after the timeout), then the pid file goes. Repeatable. */
  async stop(pid: number): Promise<void> {
    const deadline = Date.now() + (this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    let signal: NodeJS.Signals = 'SIGTERM';
    while (await this.isOurs(pid)) {
      try {
        process.kill(pid, signal);
      } catch {
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (Date.now() > deadline) signal = 'SIGKILL';
    }
    await rm(join(this.options.configDir, PID_FILE), { force: true });
  }

  /** The pid is an aardvark-dns of this config directory (not a recycled pid, not another runcd's server). */
  private async isOurs(pid: number): Promise<boolean> {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const argv = cmdline.split('\0');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    // A zombie (state Z) is an exited server its parent has not reaped yet.
    const state = /\) (\S)/.exec(stat)?.[1];
    return (
      state !== undefined &&
      state !== 'Z' &&
      argv.some((arg) => arg.endsWith('aardvark-dns')) &&
      argv.includes(this.options.configDir)
    );
  }
}

async function catchesSighup(pid: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return mask !== undefined && (BigInt(`0x${mask}`) & 1n) === 1n;
}
