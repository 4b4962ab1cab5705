import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import type { Test } from 'tap';
import { Agent, request } from 'undici';
import { resolveBinary } from '../../src/config.js';
import { openDaemon, type Daemon, type DaemonConfig } from '../../src/daemon.js';
import { mountPointsOf } from '../../src/runtime/overlay-mount.js';

/** The repository root, whether this file runs from test/ or dist/test/. */
export const REPO_ROOT = resolve(
  fileURLToPath(new URL('.', import.meta.url)),
  '..',
  '..',
  ...(import.meta.url.includes('/dist/') ? ['..'] : []),
);

export const RUNTIME_BINARY = resolveBinary(process.env.RUNCD_TEST_RUNTIME ?? 'runc', 'runtime');
export const CONMON_BINARY = resolveBinary('conmon', 'conmon');

/**
 * A private world for one test file: its own runc root, state dir, bundle root and socket, so test files can run
 * in parallel. Teardown (which tap runs even when the test fails) kills and deletes every container in the private
 * runc root, waits for their conmon monitors, and removes the directory.
 */
export interface Sandbox {
  dir: string;
  stateDir: string;
  runtimeRoot: string;
  bundleRoot: string;
  socket: string;
  config: DaemonConfig;
  /** Builds a busybox bundle under the bundle root whose init runs `args`. */
  bundle(name: string, args?: string[], edit?: (spec: Record<string, unknown>) => void): string;
  /** Unique container id for this sandbox. */
  id(name: string): string;
}

export function makeSandbox(t: Test, name: string): Sandbox {
  const sandbox = createSandbox(name);
  t.teardown(() => destroySandbox(sandbox));
  return sandbox;
}

/** A sandbox outside tap (the soak): the caller calls destroySandbox. */
export function createSandbox(name: string): Sandbox {
  const tag = randomBytes(3).toString('hex');
  const dir = join('/tmp', `runcd-t-${name}-${tag}`);
  const stateDir = join(dir, 'state');
  const runtimeRoot = join(dir, 'runc');
  const bundleRoot = join(dir, 'bundles');
  for (const path of [stateDir, runtimeRoot, bundleRoot]) mkdirSync(path, { recursive: true });
  const sandbox: Sandbox = {
    dir,
    stateDir,
    runtimeRoot,
    bundleRoot,
    socket: join(dir, 'runcd.sock'),
    config: {
      stateDir,
      runtimeRoot,
      bundleRoots: [bundleRoot],
      runtimeBinary: RUNTIME_BINARY,
      conmonBinary: CONMON_BINARY,
    },
    bundle(bundleName, args = ['sleep', '999999'], edit) {
      const path = join(bundleRoot, bundleName);
      execFileSync(join(REPO_ROOT, 'scripts', 'make-busybox-bundle.sh'), [path, ...args], {
        stdio: ['ignore', 'ignore', 'inherit'],
        env: { ...process.env, RUNTIME: RUNTIME_BINARY },
      });
      if (edit) {
        const configPath = join(path, 'config.json');
        const spec = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
        edit(spec);
        writeFileSync(configPath, JSON.stringify(spec, null, 2));
      }
      return path;
    },
    id: (containerName) => `${name}-${tag}-${containerName}`,
  };
  return sandbox;
}

export function destroySandbox(sandbox: Sandbox): void {
  const runc = (...args: string[]) =>
    execFileSync(RUNTIME_BINARY, [`--root=${sandbox.runtimeRoot}`, ...args], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  let ids: string[] = [];
  try {
    const listed = JSON.parse(runc('list', '--format', 'json').toString() || 'null') as Array<{
      id: string;
    }> | null;
    ids = (listed ?? []).map((entry) => entry.id);
  } catch {
    // no runc root left
  }
  for (const id of ids) {
    try {
      runc('delete', '--force', id);
    } catch {
      // already gone
    }
  }
  killMonitors(sandbox.dir);
  unmountUnder(sandbox.dir);
  rmSync(sandbox.dir, { recursive: true, force: true });
}

/** Writable layers a failed test left mounted in the sandbox: rm must never recurse through a live mount. */
function unmountUnder(dir: string): void {
  const points = mountPointsOf(readFileSync('/proc/self/mountinfo', 'utf8'))
    .filter((point) => point.startsWith(dir + '/'))
    .reverse();
  for (const point of points) {
    try {
      execFileSync('umount', ['--lazy', point], { stdio: 'ignore' });
    } catch {
      // unmounted meanwhile
    }
  }
}

/** conmon exits by itself once its container is gone; any monitor of this sandbox still alive is killed. */
function killMonitors(sandboxDir: string): void {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.startsWith('conmon') || cmdline.includes('/conmon\0')) {
        if (cmdline.includes(sandboxDir)) process.kill(Number(entry), 'SIGKILL');
      }
    } catch {
      // process ended while we looked
    }
  }
}

const silentLogger = pino({ level: process.env.RUNCD_TEST_LOG ?? 'silent' });

/** The daemon in-process, driven with app.inject(); closed at teardown (containers are left to the sandbox). */
export async function startInProcess(
  t: Test,
  sandbox: Sandbox,
  overrides: Partial<DaemonConfig> = {},
): Promise<Daemon> {
  const daemon = await openDaemon({ ...sandbox.config, ...overrides }, silentLogger);
  t.teardown(() => daemon.close());
  return daemon;
}

export interface JsonResponse<T = unknown> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
}

/** A thin JSON client over app.inject(), so tests read like curl sessions. */
export function client(daemon: Daemon) {
  const call = async <T>(method: string, url: string, payload?: unknown): Promise<JsonResponse<T>> => {
    const response = await daemon.app.inject({
      method: method as 'GET',
      url,
      ...(payload === undefined ? {} : { payload: payload as object }),
    });
    const text = response.body;
    return {
      status: response.statusCode,
      headers: response.headers as JsonResponse['headers'],
      body: (text ? JSON.parse(text) : undefined) as T,
    };
  };
  return {
    get: <T = Record<string, unknown>>(url: string) => call<T>('GET', url),
    post: <T = Record<string, unknown>>(url: string, payload?: unknown) => call<T>('POST', url, payload),
    delete: <T = Record<string, unknown>>(url: string) => call<T>('DELETE', url),
  };
}

/** A runcd process of its own (for daemon restart tests), talking over its unix socket. */
export class DaemonProcess {
  private child: ChildProcess | undefined;
  private readonly agent: Agent;
  output = '';

  constructor(
    private readonly sandbox: Sandbox,
    private readonly extraArgs: string[] = [],
    /** Hands the daemon an extra pipe as fd 3, as a careless parent would (to test that runc never gets it). */
    private readonly leakDescriptor = false,
    /** A command runcd is started through (e.g. setpriv with the systemd unit's restrictions). */
    private readonly launcher: string[] = [],
  ) {
    this.agent = new Agent({ connect: { socketPath: sandbox.socket } });
  }

  argv(): string[] {
    return [
      join(REPO_ROOT, 'bin', 'runcd.js'),
      '--socket',
      this.sandbox.socket,
      '--state-dir',
      this.sandbox.stateDir,
      '--runtime-root',
      this.sandbox.runtimeRoot,
      '--bundle-root',
      this.sandbox.bundleRoot,
      '--runtime',
      RUNTIME_BINARY,
      '--conmon',
      CONMON_BINARY,
      '--log-level',
      'warn',
      ...this.extraArgs,
    ];
  }

  async start(): Promise<void> {
    const [command, ...prefix] = [...this.launcher, process.execPath];
    this.child = spawn(command!, [...prefix, ...this.argv()], {
      stdio: this.leakDescriptor ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.child.stderr?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    // A bound on startup, not a timing check: on a 2-core machine running other suites, a cold start (module
    // loading, migrations, runc --version) has been seen to pass 15 s.
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) throw new Error(`runcd exited at startup: ${this.output}`);
      if (existsSync(this.sandbox.socket)) {
        try {
          const health = await this.request('GET', '/healthz');
          if (health.status === 200) return;
        } catch {
          // not listening yet
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`runcd did not become healthy: ${this.output}`);
  }

  /** The daemon's pid (a launcher such as setpriv execs runcd in place, keeping it). */
  pid(): number | undefined {
    return this.child?.pid;
  }

  /** How the process ended; undefined while it runs. */
  exitStatus(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    const child = this.child;
    if (!child || (child.exitCode === null && child.signalCode === null)) return undefined;
    return { code: child.exitCode, signal: child.signalCode };
  }

  async stop(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  }

  async request<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<JsonResponse<T>> {
    const response = await request(`http://localhost${path}`, {
      method: method as 'GET',
      dispatcher: this.agent,
      headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.body.text();
    return {
      status: response.statusCode,
      headers: response.headers,
      body: (text ? JSON.parse(text) : undefined) as T,
    };
  }

  async requestText(method: string, path: string): Promise<string> {
    const response = await request(`http://localhost${path}`, {
      method: method as 'GET',
      dispatcher: this.agent,
    });
    return response.body.text();
  }

  async close(): Promise<void> {
    await this.stop('SIGTERM');
    await this.agent.close();
  }
}

/** Polls until `check` returns a value (not undefined) or the timeout passes. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
