import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { BenchError, type BundleKind, type LifecycleDriver } from './drivers.js';
import { CONMON, REPO_ROOT, RUNC, type Workspace } from './workspace.js';

export interface HttpResult {
  status: number;
  body: string;
}

const CLOCK_TICKS_PER_SECOND = 100;

/** A runcd process of the bench's own: private socket, state dir, runc root; the bundle root is the workspace's. */
export class RuncdDaemon {
  readonly dir: string;
  readonly socket: string;
  readonly stateDir: string;
  readonly runtimeRoot: string;
  private child: ChildProcess | undefined;
  private readonly agent: Agent;
  private output = '';

  constructor(
    private readonly workspace: Workspace,
    readonly name: string,
    private readonly options: {
      runtime?: string;
      nodeArgs?: string[];
      checkout?: string;
      /** More runcd flags, after the bench's own. */
      flags?: string[];
    } = {},
  ) {
    this.dir = workspace.path(`runcd-${name}`);
    this.socket = join(this.dir, 'runcd.sock');
    this.stateDir = join(this.dir, 'state');
    this.runtimeRoot = workspace.runcRoot(`runcd-${name}`);
    this.agent = new Agent({ connect: { socketPath: this.socket }, connections: 256, pipelining: 1 });
  }

  get pid(): number {
    if (!this.child?.pid) throw new BenchError(`runcd ${this.name} is not running`);
    return this.child.pid;
  }

  async start(): Promise<void> {
    const bin = join(this.options.checkout ?? REPO_ROOT, 'bin', 'runcd.js');
    // Environment and Node flags as the installed `runcd` command runs with them (its shebang), then the bench's.
    const launch = shebangLaunch(bin);
    const argv = [
      ...launch.nodeFlags,
      ...(this.options.nodeArgs ?? []),
      bin,
      '--socket',
      this.socket,
      '--state-dir',
      this.stateDir,
      '--runtime-root',
      this.runtimeRoot,
      '--bundle-root',
      this.workspace.bundleRoot,
      '--runtime',
      this.options.runtime ?? RUNC,
      '--conmon',
      CONMON,
      '--log-level',
      'warn',
      ...(this.options.flags ?? []),
    ];
    this.child = spawn(process.execPath, argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...launch.env },
    });
    this.child.stdout?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.child.stderr?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) throw new BenchError(`runcd exited at startup: ${this.output}`);
      if (existsSync(this.socket)) {
        const health = await this.call('GET', '/healthz').catch(() => undefined);
        if (health?.status === 200) return;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new BenchError(`runcd did not become healthy: ${this.output}`);
  }

  /** Warnings and errors runcd logged (it runs at --log-level warn). */
  logOutput(): string {
    return this.output;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await this.agent.close();
  }

  async call(method: string, path: string, body?: unknown): Promise<HttpResult> {
    const response = await request(`http://localhost${path}`, {
      method: method as 'GET',
      dispatcher: this.agent,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.statusCode, body: await response.body.text() };
  }

  /** A call that must answer `expected`; anything else is a bench error carrying runcd's problem+json. */
  async expect(method: string, path: string, expected: number, body?: unknown): Promise<string> {
    const result = await this.call(method, path, body);
    if (result.status !== expected) {
      throw new BenchError(`runcd ${method} ${path}: ${result.status} (expected ${expected}) ${result.body}`);
    }
    return result.body;
  }

  /** Opens GET /events and hands each event to `onEvent` as it arrives; returns a function that closes it. */
  async subscribe(
    onEvent: (event: { type: string; id: string }, receivedAt: number) => void,
  ): Promise<() => void> {
    const controller = new AbortController();
    const response = await request('http://localhost/events', {
      method: 'GET',
      dispatcher: this.agent,
      signal: controller.signal,
    });
    if (response.statusCode !== 200) throw new BenchError(`GET /events: ${response.statusCode}`);
    let buffer = '';
    response.body.setEncoding('utf8');
    response.body.on('data', (chunk: string) => {
      const receivedAt = performance.now();
      buffer += chunk;
      let newline;
      while ((newline = buffer.indexOf('\n')) !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line) onEvent(JSON.parse(line) as { type: string; id: string }, receivedAt);
      }
    });
    response.body.on('error', () => undefined);
    return () => controller.abort();
  }

  /** Resident set size of the daemon process in bytes (VmRSS). */
  rssBytes(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) * 1024;
  }

  /** Resident set size of the daemon's spawn helper (its child that forks runc and conmon); 0 when it has none. */
  helperRssBytes(): number {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (parent !== this.pid) continue;
        // The compiled helper, or the Node one it falls back to.
        if (!/runcd-spawn-helper|spawn-helper-process/.test(readFileSync(`/proc/${entry}/cmdline`, 'utf8')))
          continue;
        const status = readFileSync(`/proc/${entry}/status`, 'utf8');
        return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) * 1024;
      } catch {
        // the process ended while it was read
      }
    }
    return 0;
  }

  /** CPU seconds (user + system) the daemon process has used so far. */
  cpuSeconds(): number {
    const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[11] and fields[12] are utime and stime (fields 14 and 15 of proc(5), counted from 1).
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  }
}

/**
 * The environment and Node flags of a script's `#!/usr/bin/env -S [NAME=VALUE...] node [FLAGS]` line (none of
 * either for a plain `#!/usr/bin/env node`), so the bench runs the daemon exactly as the installed command does.
 */
export function shebangLaunch(script: string): { env: Record<string, string>; nodeFlags: string[] } {
  const first = readFileSync(script, 'utf8').split('\n', 1)[0] ?? '';
  const match = /^#!\S*env(?: -S)?((?: [A-Z_][A-Z0-9_]*=\S*)*) node((?: --?\S+)*)\s*$/.exec(first);
  if (!match) throw new BenchError(`${script}: unexpected first line ${JSON.stringify(first)}`);
  const words = (text: string | undefined) => text?.trim().split(/\s+/).filter(Boolean) ?? [];
  const env = Object.fromEntries(
    words(match[1]).map((assignment) => {
      const eq = assignment.indexOf('=');
      return [assignment.slice(0, eq), assignment.slice(eq + 1)];
    }),
  );
  return { env, nodeFlags: words(match[2]) };
}

export class RuncdDriver implements LifecycleDriver {
  constructor(
    private readonly daemon: RuncdDaemon,
    private readonly bundles: Record<BundleKind, string>,
    readonly name = 'runcd',
  ) {}

  async create(id: string, kind: BundleKind = 'sleep'): Promise<void> {
    await this.daemon.expect('POST', '/containers', 201, { id, bundle: this.bundles[kind] });
  }

  async start(id: string): Promise<void> {
    await this.daemon.expect('POST', `/containers/${id}/start`, 200);
  }

  async state(id: string): Promise<void> {
    await this.daemon.expect('GET', `/containers/${id}`, 200);
  }

  async pid(id: string): Promise<number> {
    return (JSON.parse(await this.daemon.expect('GET', `/containers/${id}`, 200)) as { pid: number }).pid;
  }

  async list(): Promise<number> {
    return (JSON.parse(await this.daemon.expect('GET', '/containers', 200)) as unknown[]).length;
  }

  async exec(id: string): Promise<void> {
    const result = JSON.parse(
      await this.daemon.expect('POST', `/containers/${id}/exec`, 200, { args: ['true'] }),
    );
    if ((result as { exitCode: number }).exitCode !== 0)
      throw new BenchError(`runcd exec in ${id}: ${result}`);
  }

  async kill(id: string): Promise<void> {
    await this.daemon.expect('POST', `/containers/${id}/kill?signal=SIGKILL`, 204);
  }

  async waitStopped(id: string): Promise<number> {
    const body = await this.daemon.expect('POST', `/containers/${id}/wait?condition=stopped`, 200);
    return (JSON.parse(body) as { exitCode: number }).exitCode;
  }

  async stop(id: string): Promise<void> {
    await this.daemon.expect('POST', `/containers/${id}/stop?signal=SIGTERM&timeout=10`, 200);
  }

  async delete(id: string): Promise<void> {
    await this.daemon.expect('DELETE', `/containers/${id}`, 204);
  }

  async remove(id: string): Promise<void> {
    await this.daemon.call('DELETE', `/containers/${id}?force=true`);
  }
}
