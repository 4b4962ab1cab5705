import type { Readable } from 'node:stream';
import { ConflictError, InvalidInputError, RuntimeFailureError, TimeoutError } from '../errors.js';
import { ExitWatcher } from '../runtime/exit-watcher.js';
import type { OciProcess, OciSpec } from '../runtime/oci.js';
import { type ExecOutput } from '../runtime/runc.js';
import type { Container, ContainerStats, ExecBody, ExecResult, WaitResult } from '../schemas/container.js';
import { signalName, type Signal } from '../signals.js';
import type { ContainerRecord } from '../store/container-repository.js';
import { AutoRemoval } from './auto-removal.js';
import { ContainerInspection, type ContainerProcessInfo } from './container-inspection.js';
import { ContainerInstances } from './container-instances.js';
import { Reconciler } from './container-reconcile.js';
import type { ContainerServiceDeps, CreateContainerInput } from './container-service-deps.js';
import { assertAllowed } from './container-states.js';
import { ContainerView, toContainer, type ContainerFilter } from './container-view.js';
import { ContainerWaiters, withTimeout, type WaitCondition } from './container-waiters.js';
import type { EventBus } from './event-bus.js';
import { buildExecProcess, ExecProcessTemplates } from './exec-process.js';
import { KeyedMutex } from './keyed-mutex.js';
import { RestartPolicy } from './restart-policy.js';
import { RunningConfig } from './running-config.js';
import { isNotFound, translateRuntimeError } from './runtime-error-translation.js';

export type { ContainerProcessInfo } from './container-inspection.js';
export type { ContainerMonitor, ContainerRuntime } from './container-instances.js';
export type { ContainerFilter } from './container-view.js';
export type { WaitCondition } from './container-waiters.js';
export { buildExecProcess } from './exec-process.js';

export type {
  ContainerBundleChecks,
  ContainerServiceDeps,
  CreateContainerInput,
} from './container-service-deps.js';

const SIGKILL = 9;
const KILL_SETTLE_TIMEOUT_MS = 2_000;
const SIGKILL_STOP_TIMEOUT_MS = 10_000;
const DEFAULT_EXEC_OUTPUT_LIMIT = 1024 * 1024;
/** How long an exec that failed waits for its container's exit report before calling it a runtime failure. */
const EXEC_RACE_SETTLE_MS = 2_000;

/**
 * The container operations (create, start, exec, kill, stop, restart, pause, resume, delete, wait, processes,
 * stats, logs), each under the id's lock and after asking the state table (container-states.ts). runc stays the
 * source of truth for live status; the store for what runcd created; the in-memory view (container-view.ts) is
 * kept exact by these operations and by conmon's exit files, so reads never spawn runc. The steps they share
 * with reconcile are in container-instances.ts; startup in container-reconcile.ts; restarts in restart-policy.ts.
 * (A little over 400 lines: every operation a caller can ask for is here, where a reader looks for it.)
 */
/** The checked config with runcd's own mounts (name files) appended; unchanged when there are none. */
function withMounts(runtimeConfig: string, mounts: NonNullable<OciSpec['mounts']>): string {
  if (mounts.length === 0) return runtimeConfig;
  const spec = JSON.parse(runtimeConfig) as OciSpec;
  const replaced = new Set(mounts.map((mount) => mount.destination));
  spec.mounts = [...(spec.mounts ?? []).filter((mount) => !replaced.has(mount.destination)), ...mounts];
  return JSON.stringify(spec, null, 2) + '\n';
}

export class ContainerService {
  private readonly view: ContainerView;
  private readonly waiters: ContainerWaiters;
  private readonly policy: RestartPolicy;
  private readonly instances: ContainerInstances;
  private readonly reconciler: Reconciler;
  private readonly autoRemoval: AutoRemoval;
  private readonly inspection: ContainerInspection;
  private readonly templates: ExecProcessTemplates;
  private readonly config: RunningConfig;
  private readonly locks = new KeyedMutex();
  private readonly watcher: ExitWatcher;
  private closed = false;

  constructor(private readonly deps: ContainerServiceDeps) {
    this.view = new ContainerView(deps.repository, deps.events);
    this.waiters = new ContainerWaiters(deps.tombstones);
    this.policy = new RestartPolicy((id) => this.restartByPolicy(id), deps.restartClock);
    this.config = new RunningConfig(deps.conmon);
    this.templates = new ExecProcessTemplates(this.config);
    this.instances = new ContainerInstances({
      runc: deps.runc,
      conmon: deps.conmon,
      events: deps.events,
      logger: deps.logger,
      view: this.view,
      waiters: this.waiters,
      policy: this.policy,
      templates: this.templates,
      network: deps.network,
      onFinalStop: (record) => {
        if (record.autoRemove) this.autoRemoval.schedule(record.id);
      },
    });
    this.reconciler = new Reconciler({
      runc: deps.runc,
      conmon: deps.conmon,
      events: deps.events,
      logger: deps.logger,
      view: this.view,
      instances: this.instances,
      policy: this.policy,
      locks: this.locks,
    });
    this.autoRemoval = new AutoRemoval({
      view: this.view,
      instances: this.instances,
      policy: this.policy,
      locks: this.locks,
      logger: deps.logger,
      closed: () => this.closed,
    });
    this.inspection = new ContainerInspection(deps.runc, this.view, this.waiters);
    this.watcher = new ExitWatcher(deps.conmon.exitDir, (id) => void this.onExitFile(id));
    // A teardown after an exit changes what a read shows: cached list answers must not outlive it.
    deps.network?.watch(() => this.view.touch());
  }

  get events(): EventBus {
    return this.deps.events;
  }

  /** Loads the store, reconciles it with the runtime, then starts watching for exits. */
  async init(): Promise<void> {
    await this.deps.conmon.prepare();
    this.instances.runtimeSpecVersion = await this.deps.runc.specVersion();
    this.waiters.pruneTombstones();
    this.view.load();
    await this.reconciler.reconcile();
    await this.deps.network?.reconcile(
      new Map(this.view.all().map((record) => [record.id, { status: record.status, pid: record.pid }])),
    );
    this.autoRemoval.sweep();
    await this.watcher.start();
    this.reconciler.watchLostMonitors();
  }

  close(): void {
    this.closed = true;
    this.watcher.stop();
    this.policy.cancelAll();
    this.reconciler.close();
  }

  get viewRevision(): number {
    return this.view.revision;
  }

  list(filter: ContainerFilter = {}): Container[] {
    const network = this.deps.network;
    const list = this.view.list(filter);
    if (!network) return list;
    return list.map((container) => {
      const state = network.describe(container.id);
      return state ? { ...container, network: state } : container;
    });
  }

  get(id: string): Container {
    return this.described(this.view.require(id));
  }

  /** A container as GET /containers/ID shows it: with its networks and published ports, when it has any. */
  private described(record: ContainerRecord): Container {
    const network = this.deps.network?.describe(record.id);
    return network ? { ...toContainer(record), network } : toContainer(record);
  }

  has(id: string): boolean {
    return this.view.has(id);
  }

  /**
   * The config.json runc runs for the container (runcd's checked copy, limits changed by `runc update`
   * included), not the caller's bundle file; undefined for a container adopted from outside runcd.
   */
  async runningConfig(id: string): Promise<OciSpec | undefined> {
    this.view.require(id);
    return this.config.read(id);
  }

  /** Asks the runtime instead of the view (`?refresh=true`), correcting the view if they disagree. */
  async refresh(id: string): Promise<Container> {
    return this.locks.run(id, async () => {
      const record = this.view.require(id);
      if (record.status === 'stopped') return this.described(record);
      const exit = await this.deps.conmon.readExit(id);
      if (exit) {
        this.instances.markStopped(record, exit);
        return this.described(record);
      }
      try {
        this.instances.applyRuntimeState(record, await this.deps.runc.state(id));
      } catch (error) {
        if (!isNotFound(error)) throw translateRuntimeError(error, id, 'state');
        this.instances.markStopped(record, undefined);
      }
      return this.described(record);
    });
  }

  async create(input: CreateContainerInput): Promise<Container> {
    const bundle = await this.deps.bundles.inspect(input.bundle);
    if (input.expectedConfigDigest !== undefined && bundle.configDigest !== input.expectedConfigDigest) {
      throw new ConflictError(
        'bundle_config_modified',
        `config.json of bundle "${input.bundle}" was changed after runcd wrote it (${input.expectedConfigDigest}, now ${bundle.configDigest}); recreate the bundle, or pass a bundle of your own by path`,
        input.id,
      );
    }
    return this.locks.run(input.id, async () => {
      if (this.view.has(input.id)) {
        throw new ConflictError('container_exists', `container "${input.id}" already exists`, input.id);
      }
      const mounts = await this.prepareNetwork(input, bundle.spec);
      const record = this.instances.newRecord(input, bundle);
      this.view.admit(record);
      this.waiters.forgetTombstone(record.id);
      try {
        await this.instances.create(record, withMounts(bundle.runtimeConfig, mounts), () =>
          this.deps.events.publish('create', record.id, { bundle: record.bundle }),
        );
        this.templates.remember(record.id, bundle.spec.process!);
      } catch (error) {
        await this.instances.discardFailedCreate(record.id);
        throw translateRuntimeError(error, record.id, 'create');
      }
      this.deps.logger.info({ containerId: record.id, pid: record.pid }, 'container created');
      if (input.start) await this.startLocked(record);
      return this.described(record);
    });
  }

  /** Checks and stores the container's networks (nothing exists yet); the mounts its name files need. */
  private async prepareNetwork(
    input: CreateContainerInput,
    spec: OciSpec,
  ): Promise<NonNullable<OciSpec['mounts']>> {
    const request = { networks: input.networks, ports: input.ports, aliases: input.aliases };
    if (this.deps.network) return this.deps.network.prepare(input.id, request, spec);
    if (input.networks?.some((name) => name !== 'none') || input.ports?.length || input.aliases?.length) {
      throw new InvalidInputError(
        'invalid_body',
        'this runcd has no networking configured: give no networks or ports',
        input.id,
      );
    }
    return [];
  }

  /**
   * `docker network connect|disconnect`, in any status: under the id's lock no create, restart or delete is half
   * done, and a network can be added to (or removed from) a pinned namespace whatever its processes do.
   */
  async connectNetwork(id: string, network: string, aliases: string[]): Promise<Container> {
    return this.changeNetworks(id, (hooks) => hooks.connect(id, network, aliases));
  }

  async disconnectNetwork(id: string, network: string): Promise<Container> {
    return this.changeNetworks(id, (hooks) => hooks.disconnect(id, network));
  }

  private async changeNetworks(
    id: string,
    change: (hooks: NonNullable<ContainerServiceDeps['network']>) => Promise<void>,
  ): Promise<Container> {
    return this.locks.run(id, async () => {
      const record = this.view.require(id);
      if (!this.deps.network) {
        throw new InvalidInputError('invalid_body', 'this runcd has no networking configured', id);
      }
      await change(this.deps.network);
      this.view.touch();
      return this.described(record);
    });
  }

  async start(id: string): Promise<Container> {
    return this.locks.run(id, async () => {
      const record = this.view.require(id);
      await this.startLocked(record);
      return this.described(record);
    });
  }

  /**
   * With `output`, output is streamed to the caller as it comes (and the result's stdout/stderr are empty); with
   * `stdin`, the process reads it as its standard input (EOF at its end), as `runc exec` passes its own.
   */
  async exec(id: string, request: ExecBody, output?: ExecOutput, stdin?: Readable): Promise<ExecResult> {
    const process = await this.prepareExec(id, request);
    let result: ExecResult;
    try {
      result = await this.deps.runc.exec(id, process, {
        timeoutMs: request.timeoutSeconds !== undefined ? request.timeoutSeconds * 1000 : undefined,
        outputLimitBytes: this.deps.execOutputLimitBytes ?? DEFAULT_EXEC_OUTPUT_LIMIT,
        output,
        stdin,
      });
    } catch (error) {
      const translated = translateRuntimeError(error, id, 'exec');
      // runc's words for an exec whose container died under it vary with the moment (the ones known are
      // classified as `died`); whatever they are, a container that is no longer running means a lost race.
      if (translated instanceof RuntimeFailureError && (await this.diedDuringExec(id))) {
        throw new ConflictError(
          'container_stopped',
          `the container stopped during exec: ${translated.message}`,
          id,
        );
      }
      throw translated;
    }
    this.deps.events.publish('exec', id, { command: request.args.join(' '), exitCode: result.exitCode });
    return result;
  }

  /**
   * The process an exec of `request` runs in container `id`, once the container's state allows an exec and the
   * process passed the policy and the path checks (cwd and args[0] inside the container).
   */
  async prepareExec(id: string, request: Omit<ExecBody, 'timeoutSeconds'>): Promise<OciProcess> {
    const record = this.view.require(id);
    assertAllowed('exec', record);
    const process = buildExecProcess(await this.templates.of(id), request);
    this.deps.bundles.checkExecProcess(process);
    await this.deps.bundles.checkExecPaths(record, process);
    return process;
  }

  /** The container, once its state allows attaching to its process (created, running or paused). */
  checkAttach(id: string): Container {
    const record = this.view.require(id);
    assertAllowed('attach', record);
    return this.described(record);
  }

  /**
   * Whether an exec's failure was its container dying under it. runc can still report a just-killed init as
   * running (a zombie until conmon reaps it, e.g. `error executing setns process`); conmon's exit report follows
   * within milliseconds, so a short wait for it tells a lost race from a real runtime failure.
   */
  private async diedDuringExec(id: string): Promise<boolean> {
    // Registered before looking, so an exit reported while runc is asked is not missed.
    const exited = this.waiters.register(id, 'stopped');
    try {
      const record = this.view.find(id);
      if (!record || record.status === 'stopped' || !(await this.instances.stillRunning(id))) return true;
      return (
        (await withTimeout(exited.promise, EXEC_RACE_SETTLE_MS)) || this.view.find(id)?.status !== 'running'
      );
    } finally {
      exited.cancel();
    }
  }

  /**
   * Delivers a signal. For SIGKILL the answer waits (briefly) until conmon has recorded the exit, so a script
   * that kills and then reads the container sees it stopped, with its exit code, as the seed's walkthrough expects.
   */
  async kill(id: string, signal: Signal): Promise<void> {
    const exited = this.waiters.register(id, 'stopped');
    try {
      await this.locks.run(id, async () => {
        const record = this.view.require(id);
        assertAllowed('kill', record);
        this.policy.callerKilled(id);
        await this.instances.signal(record, signal.number);
        this.deps.events.publish('kill', id, { signal: signal.name });
        this.deps.logger.info({ containerId: id, signal: signal.name }, 'signal sent');
      });
      if (signal.number === SIGKILL) await withTimeout(exited.promise, KILL_SETTLE_TIMEOUT_MS);
    } finally {
      exited.cancel();
    }
  }

  /**
   * Sends the stop signal, waits up to `timeoutSeconds` (-1: forever) for the exit, then SIGKILLs. A container
   * stopped this way is never restarted by its restart policy.
   */
  async stop(
    id: string,
    options: { timeoutSeconds?: number | undefined; signal?: Signal | undefined } = {},
  ): Promise<Container> {
    return (await this.stopReporting(id, options)).container;
  }

  /** stop, saying whether there was anything to stop (Docker answers 304 when there was not). */
  async stopReporting(
    id: string,
    options: { timeoutSeconds?: number | undefined; signal?: Signal | undefined } = {},
  ): Promise<{ container: Container; stopped: boolean }> {
    const record = this.view.require(id);
    if (record.status === 'stopped') {
      // Between a death and its policy restart (the backoff) the container is stopped but coming back: a stop
      // then is the caller's, and ends that for good (as Docker's stop of a restarting container does). Under the
      // lock, so a restart whose delay just ended sees it (restartByPolicy asks isCallerStop under the lock).
      const wasComingBack = await this.locks.run(id, async () => {
        const pending = this.policy.pending(id);
        if (this.view.require(id).status === 'stopped') this.policy.callerStopped(id);
        return pending;
      });
      if (this.view.require(id).status === 'stopped') {
        return { container: this.described(this.view.require(id)), stopped: wasComingBack };
      }
    }
    let alreadyStopped = false;
    const timeoutSeconds = options.timeoutSeconds ?? record.stopTimeout;
    const signalNumber = options.signal?.number ?? record.stopSignal;
    const exited = this.waiters.register(id, 'stopped');
    try {
      alreadyStopped = await this.locks.run(id, async () => {
        const current = this.view.require(id);
        if (current.status === 'stopped') return true;
        assertAllowed('stop', current);
        this.policy.callerStopped(id);
        await this.instances.signal(current, signalNumber, true);
        return false;
      });
      if (!alreadyStopped) {
        const graceful =
          timeoutSeconds < 0
            ? (await exited.promise, true)
            : await withTimeout(exited.promise, timeoutSeconds * 1000);
        if (!graceful) {
          await this.locks.run(id, async () => {
            const current = this.view.require(id);
            if (current.status !== 'stopped') await this.instances.signal(current, SIGKILL, true);
          });
          if (!(await withTimeout(exited.promise, SIGKILL_STOP_TIMEOUT_MS))) {
            throw new TimeoutError('stop_timeout', `container "${id}" did not stop after SIGKILL`, id);
          }
        }
        this.deps.events.publish('stop', id, {
          signal: signalName(signalNumber) ?? String(signalNumber),
          escalated: !graceful,
        });
      }
    } finally {
      exited.cancel();
    }
    return { container: this.described(this.view.require(id)), stopped: !alreadyStopped };
  }

  /**
   * Stops the container if needed, then creates and starts it again from the same bundle with the same id.
   * `announce: 'start'` publishes the new run as a start instead of a restart: Docker's `start` of an exited
   * container is this same operation, and its clients watch for `start`.
   */
  async restart(
    id: string,
    options: { timeoutSeconds?: number | undefined; announce?: 'restart' | 'start' } = {},
  ): Promise<Container> {
    assertAllowed('restart', this.view.require(id));
    try {
      // A caller's restart is not the end of an auto-remove container (Docker does not remove it either).
      return await this.policy.duringCallerRestart(id, async () => {
        await this.stop(id, { timeoutSeconds: options.timeoutSeconds });
        return this.locks.run(id, async () => {
          const record = this.view.require(id);
          this.policy.callerStarted(id);
          this.policy.reset(id);
          await this.instances.recreate(record, () =>
            options.announce === 'start'
              ? this.deps.events.publish('start', id, { pid: record.pid })
              : this.deps.events.publish('restart', id, {
                  reason: 'caller',
                  restartCount: record.restartCount,
                }),
          );
          await this.instances.refreshExit(record);
          return this.described(record);
        });
      });
    } finally {
      // A restart that failed (or whose container died at once) leaves it stopped: removed after all.
      if (this.view.find(id)?.autoRemove && this.view.find(id)?.status === 'stopped')
        this.autoRemoval.schedule(id);
    }
  }

  async pause(id: string): Promise<Container> {
    return this.locks.run(id, async () => {
      const record = this.view.require(id);
      assertAllowed('pause', record);
      try {
        await this.deps.runc.pause(id);
      } catch (error) {
        throw translateRuntimeError(error, id, 'pause');
      }
      this.instances.paused(record);
      return this.described(record);
    });
  }

  async resume(id: string): Promise<Container> {
    return this.locks.run(id, async () => {
      const record = this.view.require(id);
      assertAllowed('resume', record);
      try {
        await this.deps.runc.resume(id);
      } catch (error) {
        throw translateRuntimeError(error, id, 'resume');
      }
      this.instances.resumed(record);
      return this.described(record);
    });
  }

  async delete(id: string, options: { force: boolean }): Promise<void> {
    await this.locks.run(id, async () => {
      const record = this.view.require(id);
      if (record.status !== 'stopped') await this.instances.refreshExit(record);
      assertAllowed(options.force ? 'delete --force' : 'delete', record);
      await this.instances.delete(record);
    });
  }

  /**
   * Registers a waiter before anything else can happen, so a container that exits right after the call cannot
   * race past it. Answers at once when the condition already holds; a deleted container answers from its tombstone.
   */
  waitFor(id: string, condition: WaitCondition): { result: Promise<WaitResult>; cancel: () => void } {
    return this.waiters.waitFor(id, this.view.find(id), condition);
  }

  processes(id: string): Promise<ContainerProcessInfo[]> {
    return this.inspection.processes(id);
  }

  stats(id: string): Promise<ContainerStats> {
    return this.inspection.stats(id);
  }

  /** Streams snapshots until the container stops or `signal` aborts. */
  streamStats(
    id: string,
    intervalSeconds: number,
    onStats: (stats: ContainerStats) => void,
    signal: AbortSignal,
  ): Promise<void> {
    return this.inspection.streamStats(id, intervalSeconds, onStats, signal);
  }

  /** The container's log file and a promise that settles when the container stops (or is deleted). */
  logSource(id: string): { path: string; running: boolean; stopped: Promise<unknown>; cancel: () => void } {
    const record = this.view.require(id);
    const running = record.status !== 'stopped';
    const stopped = running
      ? this.waiters.register(id, 'stopped')
      : { promise: Promise.resolve(), cancel: () => undefined };
    return {
      path: this.deps.conmon.filesFor(id).log,
      running,
      stopped: stopped.promise,
      cancel: stopped.cancel,
    };
  }

  private async startLocked(record: ContainerRecord): Promise<void> {
    const id = record.id;
    assertAllowed('start', record);
    if (record.monitorLost) {
      throw new ConflictError(
        'container_monitor_lost',
        `container "${id}" has lost its monitor: its exit would not be recorded nor its output logged; delete it and create it again`,
        id,
      );
    }
    this.policy.callerStarted(id);
    await this.instances.start(record, () => this.deps.events.publish('start', id, { pid: record.pid }));
    // A process that exits at once may already have its exit file; report it stopped right away.
    await this.instances.refreshExit(record);
    this.deps.logger.info({ containerId: id }, 'container started');
  }

  private async restartByPolicy(id: string): Promise<void> {
    if (this.closed) return;
    await this.locks.run(id, async () => {
      const record = this.view.find(id);
      if (record?.status === 'stopped' && !this.policy.isCallerStop(id))
        await this.instances.restartByPolicy(record);
    });
  }

  private async onExitFile(id: string): Promise<void> {
    if (!this.view.has(id)) return;
    await this.locks.run(id, async () => {
      const record = this.view.find(id);
      if (record && record.status !== 'stopped') await this.instances.refreshExit(record);
    });
  }
}
