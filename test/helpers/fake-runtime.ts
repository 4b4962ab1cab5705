import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InspectedBundle } from '../../src/bundle-checks/bundle-inspector.js';
import type {
  ContainerBundleChecks,
  ContainerMonitor,
  ContainerRuntime,
} from '../../src/lifecycle/container-service.js';
import type { ContainerFiles, ExitRecord } from '../../src/runtime/conmon.js';
import type { OciProcess } from '../../src/runtime/oci.js';
import {
  classifyRuntimeMessage,
  RuntimeError,
  type ExecOutcome,
  type RuntimeState,
  type Runc,
  type RuntimeStats,
} from '../../src/runtime/runc.js';

/**
 * An in-memory runc and conmon for the lifecycle's unit tests: runc's states (created, running, paused,
 * stopped), pids and exit codes, refusing what runc 1.1 refuses in runc's own words (so the kinds come from
 * runc.ts's real classifier), and exits reported as conmon reports them: an exit file `<exitDir>/<id>` holding
 * the code, written into a tmp dir, which the service's real ExitWatcher (inotify) sees within milliseconds.
 *
 * A test scripts what runc would not do on its own: `exit(id, code)` (the init exits now), `failNext(command)`
 * (runc kill fails, ...), `hangExec()`, `interruptCreate()` (conmon ran `runc create` but runcd never got
 * the report: the next runcd finds it through `awaitInterruptedCreate`).
 */

type FakeStatus = Exclude<RuntimeState['status'], 'creating'>;

interface FakeContainer {
  id: string;
  status: FakeStatus;
  pid: number;
  bundle: string;
  created: string;
  /** Signals the init does not die of (runc delivers them; a shell ignoring SIGTERM). */
  ignored: Set<number>;
  /** A signal sent while paused: takes effect on resume, as the frozen cgroup thaws. */
  pendingSignal: number | undefined;
}

type Command =
  'update' | 'create' | 'start' | 'kill' | 'delete' | 'pause' | 'resume' | 'exec' | 'state' | 'ps' | 'stats';

export interface RuntimeCall {
  command: Command;
  id: string;
  detail?: unknown;
}

const SIGKILL = 9;
const SPEC_VERSION = '1.0.2-dev';

export class FakeRuntime {
  readonly dir = mkdtempSync(join(tmpdir(), 'runcd-fake-'));
  readonly exitDir = join(this.dir, 'exits');
  readonly containers = new Map<string, FakeContainer>();
  /** Every runc/conmon command asked, in order (what a test can assert was or was not done). */
  readonly calls: RuntimeCall[] = [];
  private nextPid = 1000;
  private readonly failures = new Map<Command, string[]>();
  private readonly monitors = new Set<string>();
  /** Containers whose create conmon finished after runcd stopped listening: their report waits in the FIFO. */
  private readonly unreportedCreates = new Set<string>();
  private execHangs = 0;
  private createInterrupts = 0;
  private readonly hungExecs = new Set<() => void>();

  /** Default exit codes of the init on a fatal signal: 128 + the signal, as a shell reports it. */
  exitCodeOnSignal = (signal: number): number => 128 + signal;

  constructor() {
    mkdirSync(this.exitDir, { recursive: true });
  }

  // --- what a test scripts ---------------------------------------------------------------------------------

  /** The init exits now with `code`: runc's state says stopped, conmon writes the exit file. */
  exit(id: string, code: number): void {
    const container = this.require('exit', id);
    if (container.status === 'stopped') throw new Error(`fake: ${id} has already stopped`);
    this.stop(container, code);
  }

  /** The next `command` fails with runc's `message` (classified as runc.ts classifies it). */
  failNext(command: Command, message = 'fake runtime failure'): void {
    this.failures.set(command, [...(this.failures.get(command) ?? []), message]);
  }

  /** The next exec never answers, until the container stops (then runc's exec dies with it). */
  hangExec(): void {
    this.execHangs++;
  }

  /** The next create happens in runc, but its conmon.create never returns (runcd is killed meanwhile). */
  interruptCreate(): void {
    this.createInterrupts++;
  }

  /** The init ignores `signal` (runc delivers it; nothing happens). */
  ignore(id: string, signal: number): void {
    this.require('ignore', id).ignored.add(signal);
  }

  /** The container's conmon died (killed from outside); its container lives on. */
  killMonitor(id: string): void {
    this.monitors.delete(id);
  }

  /** runc no longer has the container (its state dir removed from outside). */
  forget(id: string): void {
    this.containers.delete(id);
    this.monitors.delete(id);
  }

  status(id: string): FakeStatus | undefined {
    return this.containers.get(id)?.status;
  }

  commands(command: Command, id?: string): RuntimeCall[] {
    return this.calls.filter((call) => call.command === command && (id === undefined || call.id === id));
  }

  cleanup(): void {
    for (const release of this.hungExecs) release();
    rmSync(this.dir, { recursive: true, force: true });
  }

  // --- internals ---------------------------------------------------------------------------------------------

  private record(command: Command, id: string, detail?: unknown): void {
    this.calls.push({ command, id, ...(detail === undefined ? {} : { detail }) });
    const queued = this.failures.get(command);
    const message = queued?.shift();
    if (message !== undefined) throw new RuntimeError(classifyRuntimeMessage(message), message, command, 1);
  }

  private require(command: string, id: string): FakeContainer {
    const container = this.containers.get(id);
    // runc's words (libcontainer's ErrNotExist), classified not_found.
    if (!container) throw new RuntimeError('not_found', `container "${id}" does not exist`, command, 1);
    return container;
  }

  /** runc's refusal in its own words; the kind comes from runc.ts's classifier, as for the real runc. */
  private refuse(command: string, message: string): never {
    throw new RuntimeError(classifyRuntimeMessage(message), message, command, 1);
  }

  private stop(container: FakeContainer, code: number): void {
    container.status = 'stopped';
    container.pid = 0;
    // conmon writes the exit file and then exits; the watcher sees the file.
    writeFileSync(join(this.exitDir, container.id), String(code));
    this.monitors.delete(container.id);
    for (const release of this.hungExecs) release();
  }

  private deliver(container: FakeContainer, signal: number): void {
    if (container.ignored.has(signal)) return;
    // Only the default fatal signals of a shell init are modelled: KILL, TERM, INT, HUP, QUIT; others are caught.
    if ([SIGKILL, 15, 2, 1, 3].includes(signal)) this.stop(container, this.exitCodeOnSignal(signal));
  }

  private filesOf(id: string): ContainerFiles {
    const dir = join(this.dir, 'containers', id);
    return {
      dir,
      bundleDir: join(dir, 'bundle'),
      bundleConfig: join(dir, 'bundle', 'config.json'),
      log: join(dir, 'ctr.log'),
      pidFile: join(dir, 'pid'),
      conmonPidFile: join(dir, 'conmon.pid'),
      runtimeLog: join(dir, 'runtime.log'),
      exitFile: join(this.exitDir, id),
      persistExitFile: join(dir, 'exit'),
      oomFile: join(dir, 'oom'),
      syncFifo: join(dir, 'sync'),
    };
  }

  private stateOf(container: FakeContainer): RuntimeState {
    return {
      ociVersion: SPEC_VERSION,
      id: container.id,
      pid: container.pid,
      status: container.status,
      bundle: container.bundle,
      rootfs: join(container.bundle, 'rootfs'),
      created: container.created,
      owner: 'root',
    };
  }

  private async runcCreate(id: string, runtimeConfig: string | undefined): Promise<number> {
    this.record('create', id);
    if (this.containers.get(id)) this.refuse('create', `container with id exists: ${id}`);
    const files = this.filesOf(id);
    mkdirSync(files.bundleDir, { recursive: true });
    if (runtimeConfig !== undefined) writeFileSync(files.bundleConfig, runtimeConfig);
    const pid = this.nextPid++;
    this.containers.set(id, {
      id,
      status: 'created',
      pid,
      bundle: files.bundleDir,
      created: new Date().toISOString(),
      ignored: new Set(),
      pendingSignal: undefined,
    });
    this.monitors.add(id);
    return pid;
  }

  // --- the runc commands the lifecycle uses (ContainerRuntime) -----------------------------------------------

  readonly runc: ContainerRuntime = {
    specVersion: async () => SPEC_VERSION,
    list: async () => [...this.containers.values()].map((container) => this.stateOf(container)),
    state: async (id) => {
      this.record('state', id);
      return this.stateOf(this.require('state', id));
    },
    start: async (id) => {
      this.record('start', id);
      const container = this.require('start', id);
      // runc 1.1's start.go words for each status.
      if (container.status === 'running') this.refuse('start', 'cannot start an already running container');
      if (container.status === 'paused') this.refuse('start', 'cannot start a container in the paused state');
      if (container.status === 'stopped') this.refuse('start', 'cannot start a container that has stopped');
      container.status = 'running';
    },
    kill: async (id, signal) => {
      this.record('kill', id, signal);
      const container = this.require('kill', id);
      if (container.status === 'stopped') this.refuse('kill', 'container not running');
      // The cgroup stays frozen (runc still says paused) until resumed: the death is seen on the thaw.
      if (container.status === 'paused') container.pendingSignal = signal;
      else this.deliver(container, signal);
    },
    delete: async (id, options = {}) => {
      this.record('delete', id, options);
      const container = this.require('delete', id);
      const live = container.status === 'running' || container.status === 'paused';
      if (live && !options.force)
        this.refuse('delete', `cannot delete container ${id} that is not stopped: ${container.status}`);
      // runc delete kills a created container (and with --force a live one); conmon writes its exit.
      if (container.status !== 'stopped') this.stop(container, this.exitCodeOnSignal(SIGKILL));
      this.containers.delete(id);
    },
    pause: async (id) => {
      this.record('pause', id);
      const container = this.require('pause', id);
      // libcontainer's Pause accepts a running or a created container.
      if (container.status !== 'running' && container.status !== 'created')
        this.refuse('pause', 'container not running');
      container.status = 'paused';
    },
    resume: async (id) => {
      this.record('resume', id);
      const container = this.require('resume', id);
      if (container.status !== 'paused') this.refuse('resume', 'container not paused');
      container.status = 'running';
      const pending = container.pendingSignal;
      container.pendingSignal = undefined;
      if (pending !== undefined) this.deliver(container, pending);
    },
    ps: async (id) => {
      this.record('ps', id);
      const container = this.require('ps', id);
      return container.status === 'stopped' ? [] : [container.pid];
    },
    stats: async (id) => {
      this.record('stats', id);
      const container = this.require('stats', id);
      if (container.status === 'stopped') this.refuse('stats', 'container not running');
      return FAKE_STATS;
    },
    streamStats: async (id, _interval, onStats) => {
      this.record('stats', id);
      this.require('stats', id);
      onStats(FAKE_STATS);
      return { done: Promise.resolve(), stop: () => undefined };
    },
    exec: async (id, process: OciProcess): Promise<ExecOutcome> => {
      this.record('exec', id, process.args);
      const container = this.require('exec', id);
      if (container.status === 'stopped') this.refuse('exec', 'cannot exec in a stopped container');
      if (container.status === 'paused') this.refuse('exec', 'cannot exec in a paused container');
      if (this.execHangs > 0) {
        this.execHangs--;
        await new Promise<void>((resolve) => this.hungExecs.add(resolve));
        // The container died under the exec: runc's init pipe breaks (classified `died`).
        this.refuse('exec', 'exec failed: read init-p: connection reset by peer');
      }
      return { exitCode: 0, stdout: '', stderr: '', truncated: false, timedOut: false };
    },
  };

  /** `runc update`, used by ContainerResourceService (not part of ContainerRuntime). */
  readonly runcUpdate: Pick<Runc, 'update'> = {
    update: async (id, resources) => {
      this.record('update', id, resources);
      // runc update needs the container's cgroup: gone once the container has stopped.
      if (this.require('update', id).status === 'stopped') this.refuse('update', 'container not running');
    },
  };

  // --- what the lifecycle asks conmon (ContainerMonitor) -----------------------------------------------------

  readonly conmon: ContainerMonitor = {
    exitDir: this.exitDir,
    prepare: async () => undefined,
    create: async (id, runtimeConfig) => {
      const pid = await this.runcCreate(id, runtimeConfig);
      if (this.createInterrupts > 0) {
        this.createInterrupts--;
        this.unreportedCreates.add(id);
        // runcd never hears back: the test closes this service and starts another over the same store.
        return new Promise<never>(() => undefined);
      }
      return { pid, conmonPid: pid + 100_000 };
    },
    readExit: async (id): Promise<ExitRecord | undefined> => {
      const path = join(this.exitDir, id);
      try {
        const text = readFileSync(path, 'utf8').trim();
        return { exitCode: Number(text), oomKilled: false, finishedAt: statSync(path).mtime.toISOString() };
      } catch {
        return undefined;
      }
    },
    clearExit: async (id) => {
      rmSync(join(this.exitDir, id), { force: true });
    },
    filesFor: (id) => this.filesOf(id),
    monitorAlive: async (id) => this.monitors.has(id),
    awaitInterruptedCreate: async (id) => {
      if (!this.unreportedCreates.delete(id)) return undefined;
      const container = this.containers.get(id);
      return container ? { pid: container.pid } : undefined;
    },
    waitForMonitorExit: async () => true,
    removeFiles: async (id) => {
      rmSync(join(this.exitDir, id), { force: true });
      rmSync(this.filesOf(id).dir, { recursive: true, force: true });
    },
  };
}

const FAKE_STATS: RuntimeStats = {
  cpu: { total: 1, user: 1, kernel: 0 },
  memory: { usage: 4096, limit: 2 ** 62, max: 4096 },
  pids: { current: 1, limit: 0 },
};

/** Bundle checks that accept every bundle: the unit layer is about the lifecycle, not the policy. */
export function acceptingBundles(): ContainerBundleChecks {
  return {
    inspect: async (path: string): Promise<InspectedBundle> => {
      const spec = {
        ociVersion: '1.0.2',
        process: { args: ['sh'], cwd: '/', user: { uid: 0, gid: 0 } },
        root: { path: 'rootfs' },
      };
      const runtimeConfig = JSON.stringify(spec);
      return { path, rootfs: join(path, 'rootfs'), spec, runtimeConfig, configDigest: 'sha256:fake' };
    },
    checkExecProcess: () => undefined,
    checkExecPaths: async () => undefined,
  };
}
