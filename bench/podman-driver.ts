import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { BenchError, BUNDLE_ARGS, type BundleKind, type LifecycleDriver } from './drivers.js';
import type { Workspace } from './workspace.js';

const execFileAsync = promisify(execFile);
const API = 'http://localhost/v4.0.0/libpod';
const IMAGE = 'localhost/runcd-bench-busybox';

/**
 * Podman's REST service (`podman system service`) on a private socket, with private storage, run root and tmp
 * dir, runc as its runtime (as runcd), cgroupfs, no network (`netns: none`, like runc's default spec) and
 * explicit rlimits: Podman's default nofile/nproc rlimits exceed this VM's hard limits and runc refuses them.
 * The image is the bench bundle's busybox rootfs, imported locally (no registry is reachable).
 */
export class PodmanService {
  readonly socket: string;
  readonly dir: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly globalArgs: string[];
  private child: ChildProcess | undefined;
  readonly agent: Agent;

  constructor(workspace: Workspace) {
    this.dir = workspace.path('podman');
    this.socket = join(this.dir, 'podman.sock');
    const conf = join(this.dir, 'containers.conf');
    writeFileSync(
      conf,
      [
        '[containers]',
        'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]',
        'netns = "none"',
        'log_driver = "k8s-file"',
        '[engine]',
        'runtime = "runc"',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        '',
      ].join('\n'),
    );
    this.env = { ...process.env, CONTAINERS_CONF: conf };
    this.globalArgs = [
      '--root',
      join(this.dir, 'root'),
      '--runroot',
      join(this.dir, 'runroot'),
      '--tmpdir',
      join(this.dir, 'tmp'),
      '--storage-driver',
      'overlay',
    ];
    this.agent = new Agent({ connect: { socketPath: this.socket }, connections: 256 });
  }

  async version(): Promise<string> {
    return (await this.podman('--version')).trim();
  }

  /** Imports the rootfs of `bundle` as the image and starts the REST service. */
  async start(bundle: string): Promise<void> {
    const tarball = join(this.dir, 'rootfs.tar');
    await execFileAsync('tar', ['-C', join(bundle, 'rootfs'), '-cf', tarball, '.']);
    await this.podman('import', tarball, IMAGE);
    this.child = spawn(
      'podman',
      [...this.globalArgs, 'system', 'service', '--time', '0', `unix://${this.socket}`],
      {
        env: this.env,
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let output = '';
    this.child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) throw new BenchError(`podman system service exited: ${output}`);
      if (existsSync(this.socket)) {
        const ping = await request(`${API}/_ping`, { dispatcher: this.agent }).catch(() => undefined);
        if (ping) {
          await ping.body.text();
          if (ping.statusCode === 200) return;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new BenchError(`podman system service did not answer: ${output}`);
  }

  /** Containers Podman still knows about. */
  async containers(): Promise<string[]> {
    const body = await this.expect('GET', '/containers/json?all=true', 200);
    return (JSON.parse(body) as Array<{ Names: string[] }>).map((entry) => entry.Names.join(','));
  }

  async stop(): Promise<void> {
    await this.podman('rm', '--all', '--force', '--time', '0').catch(() => undefined);
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await this.agent.close();
  }

  async expect(method: string, path: string, expected: number, body?: unknown): Promise<string> {
    const response = await request(`${API}${path}`, {
      method: method as 'GET',
      dispatcher: this.agent,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.body.text();
    if (response.statusCode !== expected) {
      throw new BenchError(`podman ${method} ${path}: ${response.statusCode} (expected ${expected}) ${text}`);
    }
    return text;
  }

  private async podman(...args: string[]): Promise<string> {
    const { stdout } = await execFileAsync('podman', [...this.globalArgs, ...args], { env: this.env });
    return stdout;
  }
}

export class PodmanDriver implements LifecycleDriver {
  readonly name = 'podman';

  constructor(private readonly service: PodmanService) {}

  async create(id: string, kind: BundleKind = 'sleep'): Promise<void> {
    await this.service.expect('POST', '/containers/create', 201, {
      name: id,
      image: IMAGE,
      command: BUNDLE_ARGS[kind],
      netns: { nsmode: 'none' },
    });
  }

  async start(id: string): Promise<void> {
    await this.service.expect('POST', `/containers/${id}/start`, 204);
  }

  async state(id: string): Promise<void> {
    await this.service.expect('GET', `/containers/${id}/json`, 200);
  }

  async pid(id: string): Promise<number> {
    const inspect = JSON.parse(await this.service.expect('GET', `/containers/${id}/json`, 200)) as {
      State: { Pid: number };
    };
    return inspect.State.Pid;
  }

  async list(): Promise<number> {
    return (JSON.parse(await this.service.expect('GET', '/containers/json?all=true', 200)) as unknown[])
      .length;
  }

  /** Podman's exec is three calls: create the session, start it attached (output until exit), inspect its exit. */
  async exec(id: string): Promise<void> {
    const session = JSON.parse(
      await this.service.expect('POST', `/containers/${id}/exec`, 201, {
        Cmd: ['true'],
        AttachStdout: true,
        AttachStderr: true,
      }),
    ) as { Id: string };
    await this.service.expect('POST', `/exec/${session.Id}/start`, 200, { Detach: false });
    const inspect = JSON.parse(await this.service.expect('GET', `/exec/${session.Id}/json`, 200)) as {
      ExitCode: number;
    };
    if (inspect.ExitCode !== 0) throw new BenchError(`podman exec in ${id} exited ${inspect.ExitCode}`);
  }

  async kill(id: string): Promise<void> {
    await this.service.expect('POST', `/containers/${id}/kill?signal=SIGKILL`, 204);
  }

  async waitStopped(id: string): Promise<number> {
    return Number(await this.service.expect('POST', `/containers/${id}/wait?condition=stopped`, 200));
  }

  async stop(id: string): Promise<void> {
    await this.service.expect('POST', `/containers/${id}/stop?timeout=10`, 204);
  }

  async delete(id: string): Promise<void> {
    await this.service.expect('DELETE', `/containers/${id}`, 200);
  }

  async remove(id: string): Promise<void> {
    await this.service.expect('DELETE', `/containers/${id}?force=true&timeout=0`, 200);
  }
}
