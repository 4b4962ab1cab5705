import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import type { Logger } from 'pino';
import type { CodeOfKind } from '../error-catalog.js';
import {
  ConflictError,
  containerNotFound,
  DomainError,
  InvalidInputError,
  NotFoundError,
  RuntimeFailureError,
  RuntimeRejectedError,
  TimeoutError,
} from '../errors.js';
import type { Conmon, ExitRecord } from '../runtime/conmon.js';
import { ExitWatcher } from '../runtime/exit-watcher.js';
import type { OciProcess, OciSpec } from '../runtime/oci.js';
import { isProcessRunning, readProcess } from '../runtime/procfs.js';
import {
  RuntimeError,
  UNLIMITED,
  type ExecOutput,
  type Runc,
  type RuntimeState,
  type RuntimeStats,
} from '../runtime/runc.js';
import type {
  Container,
  ContainerStats,
  ContainerStatus,
  ExecBody,
  ExecResult,
  RestartPolicy,
  WaitResult,
} from '../schemas/container.js';
import { signalName, type Signal } from '../signals.js';
import type { ContainerRecord, ContainerRepository } from '../store/container-repository.js';
import type { TombstoneRepository } from '../store/tombstone-repository.js';
import type { BundleInspector } from '../bundle-checks/bundle-inspector.js';
import type { EventAttributes, EventBus } from './event-bus.js';
import { KeyedMutex } from './keyed-mutex.js';
import { RestartScheduler } from './restart-scheduler.js';

export interface ContainerServiceDeps {
  repository: ContainerRepository;
  tombstones: TombstoneRepository;
  events: EventBus;
  runc: Runc;
  conmon: Conmon;
  bundles: BundleInspector;
  logger: Logger;
  execOutputLimitBytes?: number;
}

export interface CreateContainerInput {
  id: string;
  bundle: string;
  labels?: Record<string, string> | undefined;
  start?: boolean | undefined;
  restartPolicy?: RestartPolicy | undefined;
  stopSignal?: Signal | undefined;
  stopTimeout?: number | undefined;
  /** For a bundle runcd wrote: the digest of the config.json it wrote; a config changed since is refused. */
  expectedConfigDigest?: string | undefined;
}

export interface ContainerFilter {
  status?: ContainerStatus | undefined;
  labels?: Array<[string, string]> | undefined;
}

export type WaitCondition = 'stopped' | 'removed';

export interface ContainerProcessInfo {
  pid: number;
  ppid: number;
  uid: number;
  user: string;
  state: string;
  command: string;
}

type Waiter = (condition: WaitCondition, result: WaitResult) => void;

const SIGKILL = 9;
const SIGTERM = 15;
const KILL_SETTLE_TIMEOUT_MS = 2_000;
const SIGKILL_STOP_TIMEOUT_MS = 10_000;
const DEFAULT_EXEC_OUTPUT_LIMIT = 1024 * 1024;
const DEFAULT_STOP_TIMEOUT_SECONDS = 10;
/** A container that dies this soon after a caller's kill was stopped by the caller: no policy restart. */
const CALLER_KILL_WINDOW_MS = 10_000;
/** Exit codes of deleted containers stay readable through wait for at least 5 minutes. */
const TOMBSTONE_RETENTION_MS = 10 * 60_000;
/** How often the init of a container without its monitor is looked for in /proc (nobody else reports its end). */
const LOST_MONITOR_POLL_MS = 500;
/** The mark on events a restarted runcd publishes for what it found or finished at startup. */
const RECONCILED: EventAttributes = { reconciled: true };

/**
 * Owns the container state machine (creating → created → running ⇄ paused → stopped), per-id locking, events
 * and persistence. runc stays the source of truth for live status; the store is the source of truth for what
 * runcd created; the in-memory view is kept exact by runcd's own operations and by conmon's exit files, so reads
 * never spawn runc.
 */
export class ContainerService {
  private readonly view = new Map<string, ContainerRecord>();
  /**
   * Moves on with every change a read can show (a persisted record, one added or removed), so an answer built
   * from the view at one revision stays exact until it moves: GET /containers serves its bytes from that.
   */
  private revision = 0;
  private readonly processTemplates = new Map<string, OciProcess>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  /** id → time until which a death counts as caller-requested (Infinity after an explicit stop). */
  private readonly callerStops = new Map<string, number>();
  private readonly locks = new KeyedMutex();
  private readonly watcher: ExitWatcher;
  private readonly restarts: RestartScheduler;
  private readonly owner = userInfo().username;
  /** runc's `ociVersion` (its spec version), asked once at init so creates need no `runc state`. */
  private runtimeSpecVersion: string | undefined;
  private closed = false;
  private lostMonitorTimer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: ContainerServiceDeps) {
    this.watcher = new ExitWatcher(deps.conmon.exitDir, (id) => void this.onExitFile(id));
    this.restarts = new RestartScheduler((id) => this.restartByPolicy(id));
  }

  get events(): EventBus {
    return this.deps.events;
  }

  /** Loads the store, reconciles it with the runtime, then starts watching for exits. */
  async init(): Promise<void> {
    await this.deps.conmon.prepare();
    this.runtimeSpecVersion = await this.deps.runc.specVersion();
    this.deps.tombstones.pruneRemovedBefore(new Date(Date.now() - TOMBSTONE_RETENTION_MS).toISOString());
    for (const record of this.deps.repository.all()) this.view.set(record.id, record);
    await this.reconcile();
    await this.watcher.start();
    this.watchLostMonitors();
  }

  close(): void {
    this.closed = true;
    this.watcher.stop();
    this.restarts.cancelAll();
    clearInterval(this.lostMonitorTimer);
  }

  get viewRevision(): number {
    return this.revision;
  }

  list(filter: ContainerFilter = {}): Container[] {
    const result: Container[] = [];
    for (const record of this.view.values()) {
      if (filter.status && record.status !== filter.status) continue;
      if (filter.labels?.some(([key, value]) => record.labels[key] !== value)) continue;
      result.push(toContainer(record));
    }
    return result;
  }

  get(id: string): Container {
    return toContainer(this.require(id));
  }

  /** Asks the runtime instead of the view (`?refresh=true`), correcting the view if they disagree. */
  async refresh(id: string): Promise<Container> {
    return this.locks.run(id, async () => {
      const record = this.require(id);
      if (record.status === 'stopped') return toContainer(record);
      const exit = await this.deps.conmon.readExit(id);
      if (exit) {
        this.markStopped(record, exit);
        return toContainer(record);
      }
      try {
        this.applyRuntimeState(record, await this.deps.runc.state(id));
      } catch (error) {
        if (!(error instanceof RuntimeError && error.kind === 'not_found'))
          throw this.translate(error, id, 'state');
        this.markStopped(record, undefined);
      }
      return toContainer(record);
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
      const record: ContainerRecord = {
        id: input.id,
        status: 'creating',
        pid: 0,
        bundle: bundle.path,
        rootfs: bundle.rootfs,
        created: new Date().toISOString(),
        ociVersion: bundle.spec.ociVersion ?? '',
        owner: this.owner,
        labels: input.labels ?? {},
        exitCode: null,
        oomKilled: false,
        startedAt: null,
        finishedAt: null,
        configDigest: bundle.configDigest,
        restartPolicy: input.restartPolicy ?? { name: 'no' },
        restartCount: 0,
        stopSignal: input.stopSignal?.number ?? SIGTERM,
        stopTimeout: input.stopTimeout ?? DEFAULT_STOP_TIMEOUT_SECONDS,
        intent: null,
        monitorLost: false,
      };
      this.admit(record);
      this.deps.tombstones.remove(record.id);
      try {
        await this.createInstance(record, bundle.runtimeConfig, () =>
          this.deps.events.publish('create', record.id, { bundle: record.bundle }),
        );
        this.processTemplates.set(record.id, bundle.spec.process!);
      } catch (error) {
        await this.discardFailedCreate(record.id);
        throw this.translate(error, record.id, 'create');
      }
      this.deps.logger.info({ containerId: record.id, pid: record.pid }, 'container created');
      if (input.start) await this.startLocked(record);
      return toContainer(record);
    });
  }

  async start(id: string): Promise<Container> {
    return this.locks.run(id, async () => {
      const record = this.require(id);
      await this.startLocked(record);
      return toContainer(record);
    });
  }

  /** With `output`, output is streamed to the caller as it comes (and the result's stdout/stderr are empty). */
  async exec(id: string, request: ExecBody, output?: ExecOutput): Promise<ExecResult> {
    const record = this.require(id);
    if (record.status === 'stopped') {
      throw new ConflictError('container_stopped', 'cannot exec into a stopped container', id);
    }
    if (record.status === 'paused') {
      throw new ConflictError('container_paused', 'cannot exec into a paused container: resume it first', id);
    }
    if (record.status === 'creating') {
      throw new ConflictError('container_not_running', `container "${id}" is still being created`, id);
    }
    const process = buildExecProcess(await this.processTemplate(record), request);
    this.deps.bundles.checkExecProcess(process);
    await this.deps.bundles.checkExecPaths(record, process);
    let result: ExecResult;
    try {
      result = await this.deps.runc.exec(id, process, {
        timeoutMs: request.timeoutSeconds !== undefined ? request.timeoutSeconds * 1000 : undefined,
        outputLimitBytes: this.deps.execOutputLimitBytes ?? DEFAULT_EXEC_OUTPUT_LIMIT,
        output,
      });
    } catch (error) {
      const translated = this.translate(error, id, 'exec');
      // runc's words for an exec whose container died under it vary with the moment (the ones known are
      // classified as `died`); whatever they are, a container that is no longer running means a lost race.
      if (translated instanceof RuntimeFailureError && !(await this.stillRunning(id))) {
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
   * Delivers a signal. For SIGKILL the answer waits (briefly) until conmon has recorded the exit, so a script
   * that kills and then reads the container sees it stopped, with its exit code, as the seed's walkthrough expects.
   */
  async kill(id: string, signal: Signal): Promise<void> {
    const exited = this.waitForCondition(id, 'stopped');
    try {
      await this.locks.run(id, async () => {
        const record = this.require(id);
        if (record.status === 'stopped' || record.status === 'creating') {
          throw new ConflictError('container_not_running', `container "${id}" is not running`, id);
        }
        this.callerStops.set(id, Math.max(this.callerStops.get(id) ?? 0, Date.now() + CALLER_KILL_WINDOW_MS));
        await this.signal(record, signal.number);
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
    const record = this.require(id);
    if (record.status === 'stopped') return { container: toContainer(record), stopped: false };
    let alreadyStopped = false;
    const timeoutSeconds = options.timeoutSeconds ?? record.stopTimeout;
    const signalNumber = options.signal?.number ?? record.stopSignal;
    const exited = this.waitForCondition(id, 'stopped');
    try {
      alreadyStopped = await this.locks.run(id, async () => {
        const current = this.require(id);
        if (current.status === 'stopped') return true;
        if (current.status === 'creating') {
          throw new ConflictError('container_not_created', `container "${id}" is still being created`, id);
        }
        this.restarts.cancel(id);
        this.callerStops.set(id, Infinity);
        await this.signal(current, signalNumber, true);
        return false;
      });
      if (!alreadyStopped) {
        const graceful =
          timeoutSeconds < 0
            ? (await exited.promise, true)
            : await withTimeout(exited.promise, timeoutSeconds * 1000);
        if (!graceful) {
          await this.locks.run(id, async () => {
            const current = this.require(id);
            if (current.status !== 'stopped') await this.signal(current, SIGKILL, true);
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
    return { container: toContainer(this.require(id)), stopped: !alreadyStopped };
  }

  /** Stops the container if needed, then creates and starts it again from the same bundle with the same id. */
  async restart(id: string, options: { timeoutSeconds?: number | undefined } = {}): Promise<Container> {
    await this.stop(id, { timeoutSeconds: options.timeoutSeconds });
    return this.locks.run(id, async () => {
      const record = this.require(id);
      this.callerStops.delete(id);
      this.restarts.reset(id);
      await this.recreateLocked(record, () =>
        this.deps.events.publish('restart', id, { reason: 'caller', restartCount: record.restartCount }),
      );
      await this.refreshExit(record);
      return toContainer(record);
    });
  }

  async pause(id: string): Promise<Container> {
    return this.locks.run(id, async () => {
      const record = this.require(id);
      if (record.status !== 'running') {
        throw new ConflictError(
          'container_not_running',
          `cannot pause a container that is ${record.status}`,
          id,
        );
      }
      try {
        await this.deps.runc.pause(id);
      } catch (error) {
        throw this.translate(error, id, 'pause');
      }
      record.status = 'paused';
      this.persistWith(record, () => this.deps.events.publish('pause', id));
      return toContainer(record);
    });
  }

  async resume(id: string): Promise<Container> {
    return this.locks.run(id, async () => {
      const record = this.require(id);
      if (record.status !== 'paused') {
        throw new ConflictError(
          'container_not_paused',
          `cannot resume a container that is ${record.status}`,
          id,
        );
      }
      try {
        await this.deps.runc.resume(id);
      } catch (error) {
        throw this.translate(error, id, 'resume');
      }
      record.status = 'running';
      this.persistWith(record, () => this.deps.events.publish('resume', id));
      return toContainer(record);
    });
  }

  async delete(id: string, options: { force: boolean }): Promise<void> {
    await this.locks.run(id, async () => {
      const record = this.require(id);
      if (record.status !== 'stopped') await this.refreshExit(record);
      if (record.status !== 'stopped' && !options.force) {
        throw new ConflictError(
          'container_not_stopped',
          `cannot delete container that is not stopped: ${record.status}`,
          id,
        );
      }
      this.restarts.reset(id);
      this.callerStops.set(id, Infinity);
      // The intent first: from here on a runcd killed at any step finishes the delete when it starts again,
      // instead of leaving a row for a container runc no longer has.
      record.intent = 'delete';
      this.persist(record);
      try {
        await this.deps.runc.delete(id, { force: record.status !== 'stopped' });
      } catch (error) {
        if (!(error instanceof RuntimeError && error.kind === 'not_found')) {
          record.intent = null;
          this.persist(record);
          throw this.translate(error, id, 'delete');
        }
      }
      await this.completeDelete(record);
    });
  }

  /** The steps of a delete after `runc delete`: the exit, the files, the tombstone, the row, the event. */
  private async completeDelete(record: ContainerRecord, attributes?: EventAttributes): Promise<void> {
    const id = record.id;
    await this.deps.conmon.waitForMonitorExit(id);
    if (record.status !== 'stopped')
      this.markStopped(record, await this.deps.conmon.readExit(id), attributes);
    await this.deps.conmon.removeFiles(id);
    const tombstone = {
      id,
      exitCode: record.exitCode,
      oomKilled: record.oomKilled,
      finishedAt: record.finishedAt,
      removedAt: new Date().toISOString(),
    };
    this.deps.events.atomically(() => {
      this.deps.tombstones.put(tombstone);
      this.forget(id);
      this.deps.events.publish('delete', id, attributes);
    });
    this.processTemplates.delete(id);
    this.callerStops.delete(id);
    this.notify(id, 'removed', { ...waitResultOf(record), timedOut: false });
    this.deps.logger.info({ containerId: id }, 'container deleted');
  }

  /**
   * Registers a waiter before anything else can happen, so a container that exits right after the call cannot
   * race past it. Answers at once when the condition already holds; a deleted container answers from its tombstone.
   */
  waitFor(id: string, condition: WaitCondition): { result: Promise<WaitResult>; cancel: () => void } {
    const record = this.view.get(id);
    if (!record) {
      const tombstone = this.deps.tombstones.get(id);
      if (!tombstone) throw containerNotFound(id);
      return {
        result: Promise.resolve({
          exitCode: tombstone.exitCode,
          oomKilled: tombstone.oomKilled,
          finishedAt: tombstone.finishedAt,
          timedOut: false,
        }),
        cancel: () => undefined,
      };
    }
    if (condition === 'stopped' && record.status === 'stopped') {
      return {
        result: Promise.resolve({ ...waitResultOf(record), timedOut: false }),
        cancel: () => undefined,
      };
    }
    const waiter = this.waitForCondition(id, condition);
    return { result: waiter.promise, cancel: waiter.cancel };
  }

  async processes(id: string): Promise<ContainerProcessInfo[]> {
    const record = this.require(id);
    if (record.status === 'stopped' || record.status === 'creating') {
      throw new ConflictError('container_not_running', `container "${id}" is not running`, id);
    }
    let pids: number[];
    try {
      pids = await this.deps.runc.ps(id);
    } catch (error) {
      throw this.translate(error, id, 'ps');
    }
    const users = await readPasswd(record.rootfs);
    const details = await Promise.all(pids.map((pid) => readProcess(pid)));
    return details
      .filter((detail) => detail !== undefined)
      .map((detail) => ({ ...detail, user: users.get(detail.uid) ?? String(detail.uid) }));
  }

  async stats(id: string): Promise<ContainerStats> {
    this.requireLive(id);
    try {
      return toContainerStats(id, await this.deps.runc.stats(id));
    } catch (error) {
      throw this.translate(error, id, 'stats');
    }
  }

  /** Streams snapshots until the container stops or `signal` aborts. */
  async streamStats(
    id: string,
    intervalSeconds: number,
    onStats: (stats: ContainerStats) => void,
    signal: AbortSignal,
  ): Promise<void> {
    this.requireLive(id);
    const stream = await this.deps.runc.streamStats(id, intervalSeconds, (stats) =>
      onStats(toContainerStats(id, stats)),
    );
    const stopped = this.waitForCondition(id, 'stopped');
    const aborted = new Promise<void>((resolve) =>
      signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    try {
      await Promise.race([stream.done, stopped.promise, aborted]);
    } finally {
      stream.stop();
      stopped.cancel();
    }
  }

  /** The container's log file and a promise that settles when the container stops (or is deleted). */
  logSource(id: string): { path: string; running: boolean; stopped: Promise<unknown>; cancel: () => void } {
    const record = this.require(id);
    const running = record.status !== 'stopped';
    const stopped = running
      ? this.waitForCondition(id, 'stopped')
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
    const refusal: Partial<Record<ContainerStatus, [CodeOfKind<'conflict'>, string]>> = {
      running: ['container_already_running', 'cannot start an already running container'],
      paused: ['container_paused', 'cannot start a paused container: resume it instead'],
      stopped: ['container_stopped', 'cannot start a container that has stopped'],
      creating: ['container_not_created', `container "${id}" is still being created`],
    };
    const refused = refusal[record.status];
    if (refused) throw new ConflictError(refused[0], refused[1], id);
    if (record.monitorLost) {
      throw new ConflictError(
        'container_monitor_lost',
        `container "${id}" has lost its monitor: its exit would not be recorded nor its output logged; delete it and create it again`,
        id,
      );
    }
    this.callerStops.delete(id);
    await this.startInstance(record, () => this.deps.events.publish('start', id, { pid: record.pid }));
    // A process that exits at once may already have its exit file; report it stopped right away.
    await this.refreshExit(record);
    this.deps.logger.info({ containerId: id }, 'container started');
  }

  /**
   * conmon + `runc create` on runcd's checked copy of the record's config (written from `runtimeConfig` on the
   * first create, reused on restarts). Everything `runc state` would add is known without asking it (a `runc
   * state` here cost a whole runc process per create): conmon reports the init pid, runc's ociVersion is its spec
   * version, `created` is when runc create ran, and the owner is runcd's user.
   */
  private async createInstance(
    record: ContainerRecord,
    runtimeConfig?: string,
    announce?: () => void,
  ): Promise<void> {
    const created = new Date().toISOString();
    const { pid } = await this.deps.conmon.create(record.id, runtimeConfig);
    Object.assign(record, {
      status: 'created',
      pid,
      created,
      ociVersion: this.runtimeSpecVersion ?? record.ociVersion,
      owner: this.owner,
      exitCode: null,
      oomKilled: false,
      startedAt: null,
      finishedAt: null,
      monitorLost: false,
    });
    this.persistWith(record, announce);
  }

  private async startInstance(record: ContainerRecord, announce?: () => void): Promise<void> {
    try {
      await this.deps.runc.start(record.id);
    } catch (error) {
      throw this.translate(error, record.id, 'start');
    }
    record.status = 'running';
    record.startedAt = new Date().toISOString();
    // A restart's intent lasts until here: killed before, the restarted runcd starts the container itself.
    record.intent = null;
    this.persistWith(record, announce);
  }

  /**
   * Replaces a stopped container's runtime instance: runc delete, then create and start from the same bundle. The
   * caller publishes `restart` and then looks for an exit, so a container that dies at once has its `die` after
   * the `restart` that began its run.
   */
  private async recreateLocked(record: ContainerRecord, announce: () => void): Promise<void> {
    if (record.status !== 'stopped') {
      throw new ConflictError(
        'container_not_stopped',
        `container "${record.id}" is ${record.status}`,
        record.id,
      );
    }
    try {
      await this.deps.runc.delete(record.id);
    } catch (error) {
      if (!(error instanceof RuntimeError && error.kind === 'not_found'))
        throw this.translate(error, record.id, 'delete');
    }
    await this.deps.conmon.waitForMonitorExit(record.id);
    await this.deps.conmon.clearExit(record.id);
    // `creating` with the restart's intent: a runcd killed during the create finishes it (or puts the container
    // back to stopped, its last exit kept) instead of keeping a stopped row over a new runc container.
    record.status = 'creating';
    record.intent = 'restart';
    this.persist(record);
    try {
      await this.createInstance(record);
    } catch (error) {
      // The old instance is gone and no new one exists: the container stays stopped with its last exit.
      record.status = 'stopped';
      record.pid = 0;
      record.intent = null;
      this.persist(record);
      throw this.translate(error, record.id, 'create');
    }
    try {
      await this.startInstance(record, announce);
    } finally {
      // A start that failed leaves a created container: nothing is left to finish.
      if (record.intent) {
        record.intent = null;
        this.persist(record);
      }
    }
  }

  private async restartByPolicy(id: string): Promise<void> {
    if (this.closed) return;
    await this.locks.run(id, async () => {
      const record = this.view.get(id);
      if (!record || record.status !== 'stopped' || this.isCallerStop(id)) return;
      try {
        record.restartCount++;
        // Readable at once; the store gets it with the recreate's own persist below.
        this.revision++;
        await this.recreateLocked(record, () =>
          this.deps.events.publish('restart', id, { reason: 'policy', restartCount: record.restartCount }),
        );
        await this.refreshExit(record);
        this.deps.logger.info({ containerId: id, restartCount: record.restartCount }, 'restarted by policy');
      } catch (error) {
        this.deps.logger.error({ containerId: id, err: error }, 'restart by policy failed');
      }
    });
  }

  private async onExitFile(id: string): Promise<void> {
    if (!this.view.has(id)) return;
    await this.locks.run(id, async () => {
      const record = this.view.get(id);
      if (record && record.status !== 'stopped') await this.refreshExit(record);
    });
  }

  /** Marks the record stopped when conmon has written its exit file. Caller holds the id's lock. */
  private async refreshExit(record: ContainerRecord): Promise<void> {
    const exit = await this.deps.conmon.readExit(record.id);
    if (exit) this.markStopped(record, exit);
  }

  private markStopped(
    record: ContainerRecord,
    exit: ExitRecord | undefined,
    attributes?: EventAttributes,
  ): void {
    const ranForMs = record.startedAt ? Date.now() - Date.parse(record.startedAt) : 0;
    record.status = 'stopped';
    record.pid = 0;
    record.exitCode = exit?.exitCode ?? null;
    record.oomKilled = exit?.oomKilled ?? false;
    record.finishedAt = exit?.finishedAt ?? new Date().toISOString();
    this.persistWith(record, () =>
      this.deps.events.publish('die', record.id, {
        exitCode: record.exitCode,
        oomKilled: record.oomKilled,
        ...attributes,
      }),
    );
    this.deps.logger.info(
      { containerId: record.id, exitCode: record.exitCode, oomKilled: record.oomKilled },
      'container exited',
    );
    this.notify(record.id, 'stopped', { ...waitResultOf(record), timedOut: false });
    if (shouldRestart(record) && !this.isCallerStop(record.id)) this.restarts.schedule(record.id, ranForMs);
  }

  private isCallerStop(id: string): boolean {
    return (this.callerStops.get(id) ?? 0) > Date.now();
  }

  /**
   * runc kill; a paused container is resumed afterwards so the signal is actually delivered. With
   * `tolerateExit`, a container that died before the signal reached it (its exit not yet seen) is not an error.
   */
  private async signal(record: ContainerRecord, signalNumber: number, tolerateExit = false): Promise<void> {
    try {
      await this.deps.runc.kill(record.id, signalNumber);
      if (record.status === 'paused') {
        await this.deps.runc.resume(record.id);
        record.status = 'running';
        this.persist(record);
      }
    } catch (error) {
      const exited =
        error instanceof RuntimeError && (error.kind === 'not_running' || error.kind === 'stopped');
      if (!(tolerateExit && exited)) throw this.translate(error, record.id, 'kill');
    }
  }

  private waitForCondition(
    id: string,
    condition: WaitCondition,
  ): { promise: Promise<WaitResult>; cancel: () => void } {
    let waiter!: Waiter;
    const promise = new Promise<WaitResult>((resolve) => {
      waiter = (happened, result) => {
        // A removal also satisfies a wait for "stopped": a deleted container is certainly not running.
        if (happened === condition || happened === 'removed') resolve(result);
      };
    });
    const set = this.waiters.get(id) ?? new Set<Waiter>();
    set.add(waiter);
    this.waiters.set(id, set);
    return {
      promise,
      cancel: () => {
        set.delete(waiter);
        if (set.size === 0 && this.waiters.get(id) === set) this.waiters.delete(id);
      },
    };
  }

  private notify(id: string, condition: WaitCondition, result: WaitResult): void {
    for (const waiter of [...(this.waiters.get(id) ?? [])]) waiter(condition, result);
  }

  private async discardFailedCreate(id: string): Promise<void> {
    try {
      await this.deps.runc.delete(id, { force: true });
    } catch (error) {
      if (!(error instanceof RuntimeError && error.kind === 'not_found')) {
        this.deps.logger.warn(
          { containerId: id, err: error },
          'cleanup after failed create: runtime delete failed',
        );
      }
    }
    await this.deps.conmon.waitForMonitorExit(id);
    await this.deps.conmon.removeFiles(id);
    this.forget(id);
  }

  /**
   * Startup reconciliation. Exits that happened while runcd was down come from conmon's exit files (and emit
   * their `die` event once); operations a killed runcd was in the middle of are finished (a create from conmon's
   * report in the sync FIFO, a delete or restart from the intent persisted before its first step); runc
   * containers in runcd's root without a row are adopted. Every transition found or finished here publishes its
   * event, marked `reconciled`, once: the row is persisted in its new state before the event is.
   */
  private async reconcile(): Promise<void> {
    const live = new Map<string, RuntimeState>();
    for (const state of await this.deps.runc.list()) live.set(state.id, state);
    for (const record of [...this.view.values()]) {
      const state = live.get(record.id);
      live.delete(record.id);
      if (record.intent === 'delete') {
        await this.finishInterruptedDelete(record);
        continue;
      }
      if (record.status === 'creating') {
        await this.finishInterruptedCreate(record, state);
        continue;
      }
      const restarting = record.intent === 'restart';
      if (restarting) this.announceInterruptedRestart(record);
      await this.reconcileInstance(record, state);
      if (restarting) await this.finishInterruptedRestart(record);
    }
    for (const state of live.values()) {
      this.deps.logger.warn(
        { containerId: state.id, status: state.status },
        'adopting runtime container without a record',
      );
      const record: ContainerRecord = {
        id: state.id,
        status: 'creating',
        pid: 0,
        bundle: state.bundle,
        rootfs: state.rootfs,
        created: state.created,
        ociVersion: state.ociVersion,
        owner: state.owner || this.owner,
        labels: {},
        exitCode: null,
        oomKilled: false,
        startedAt: null,
        finishedAt: null,
        configDigest: '',
        restartPolicy: { name: 'no' },
        restartCount: 0,
        stopSignal: SIGTERM,
        stopTimeout: DEFAULT_STOP_TIMEOUT_SECONDS,
        intent: null,
        monitorLost: false,
      };
      this.admit(record);
      this.applyRuntimeState(record, state);
    }
  }

  /** A row that is not in the middle of an operation, against what runc and conmon say now. */
  private async reconcileInstance(record: ContainerRecord, state: RuntimeState | undefined): Promise<void> {
    if (record.status === 'stopped') return;
    const exit = await this.deps.conmon.readExit(record.id);
    if (exit) {
      this.markStopped(record, exit, RECONCILED);
      return;
    }
    if (!state) {
      this.deps.logger.warn(
        { containerId: record.id },
        'container vanished from the runtime; marking stopped',
      );
      this.markStopped(record, undefined, RECONCILED);
      return;
    }
    this.applyRuntimeState(record, state, RECONCILED);
    // (re-read: applyRuntimeState may have stopped it, which TypeScript's narrowing above cannot know)
    if ((record.status as ContainerStatus) === 'stopped' || record.monitorLost) return;
    if (await this.deps.conmon.monitorAlive(record.id)) return;
    // conmon writes the exit file and then exits: an exit between the two reads above is an ordinary one.
    const lateExit = await this.deps.conmon.readExit(record.id);
    if (lateExit) {
      this.markStopped(record, lateExit, RECONCILED);
      return;
    }
    record.monitorLost = true;
    this.persistWith(record, () =>
      this.deps.events.publish('monitor-lost', record.id, { status: record.status, ...RECONCILED }),
    );
    this.deps.logger.warn(
      { containerId: record.id, status: record.status, pid: record.pid },
      'container has lost its conmon monitor: its exit code will not be known and its output is not logged; delete it and create it again',
    );
  }

  /**
   * A create (a first one, or a restart's) that runcd was killed in. conmon, if it lives, reports the init pid in
   * the sync FIFO even though nobody was reading; runc's own state says whether the create happened. Without a
   * container in runc the create is undone: a first create's row goes, a restart's container is stopped again
   * with its last exit.
   */
  private async finishInterruptedCreate(
    record: ContainerRecord,
    found: RuntimeState | undefined,
  ): Promise<void> {
    const id = record.id;
    let state = found;
    if ((!state || state.status === 'creating') && (await this.deps.conmon.monitorAlive(id))) {
      const report = await this.deps.conmon.awaitInterruptedCreate(id);
      if (report && 'error' in report) {
        this.deps.logger.warn({ containerId: id, error: report.error }, 'interrupted create had failed');
      }
      state = await this.deps.runc.state(id).catch(() => undefined);
    }
    if (!state || state.status === 'creating') {
      this.deps.logger.warn({ containerId: id }, 'undoing a create that never finished');
      if (record.intent !== 'restart') {
        await this.discardFailedCreate(id);
        return;
      }
      await this.deps.runc.delete(id, { force: true }).catch(() => undefined);
      await this.deps.conmon.waitForMonitorExit(id);
      await this.deps.conmon.clearExit(id);
      record.status = 'stopped';
      record.pid = 0;
      record.intent = null;
      this.persist(record);
      return;
    }
    Object.assign(record, {
      status: 'created',
      pid: state.pid,
      created: state.created,
      ociVersion: this.runtimeSpecVersion ?? record.ociVersion,
      exitCode: null,
      oomKilled: false,
      startedAt: null,
      finishedAt: null,
      monitorLost: false,
    });
    // A restart announces itself with its own event, as an uninterrupted one does.
    const restarting = record.intent === 'restart';
    if (restarting) this.announceInterruptedRestart(record);
    else
      this.persistWith(record, () =>
        this.deps.events.publish('create', id, { bundle: record.bundle, ...RECONCILED }),
      );
    this.deps.logger.warn({ containerId: id, pid: record.pid }, 'finished a create runcd was killed in');
    await this.reconcileInstance(record, state);
    if (restarting) await this.finishInterruptedRestart(record);
  }

  /**
   * Once the restart's new instance exists, before anything it did (a `die`) is published. The intent goes with
   * the event: a runcd killed after this announces nothing twice (it leaves a created container as it is).
   */
  private announceInterruptedRestart(record: ContainerRecord): void {
    record.intent = null;
    this.persistWith(record, () =>
      this.deps.events.publish('restart', record.id, { restartCount: record.restartCount, ...RECONCILED }),
    );
  }

  /** A restart whose new instance exists: started if the killed runcd did not get that far. */
  private async finishInterruptedRestart(record: ContainerRecord): Promise<void> {
    if (record.status === 'created' && !record.monitorLost) {
      try {
        await this.startInstance(record);
        await this.refreshExit(record);
      } catch (error) {
        this.deps.logger.error(
          { containerId: record.id, err: error },
          'start of an interrupted restart failed',
        );
      }
    }
  }

  /** A delete runcd was killed in: its intent was persisted before `runc delete`, so it is finished now. */
  private async finishInterruptedDelete(record: ContainerRecord): Promise<void> {
    this.callerStops.set(record.id, Infinity);
    try {
      await this.deps.runc.delete(record.id, { force: true });
    } catch (error) {
      if (!(error instanceof RuntimeError && error.kind === 'not_found')) {
        // The row stays, with its intent, so the next start (or the caller's next delete) tries again.
        this.deps.logger.error(
          { containerId: record.id, err: error },
          'finishing an interrupted delete failed',
        );
        return;
      }
    }
    this.deps.logger.warn({ containerId: record.id }, 'finishing a delete runcd was killed in');
    await this.completeDelete(record, RECONCILED);
  }

  /**
   * Nobody writes the exit of a container whose monitor is gone, so its init is looked for in /proc instead: its
   * end is noticed (stopped, exit code unknown) and `stop`, `kill` and `wait` still answer.
   */
  private watchLostMonitors(): void {
    const lost = () =>
      [...this.view.values()].filter(
        (record) => record.monitorLost && record.status !== 'stopped' && record.status !== 'creating',
      );
    // Only while there is one: an idle daemon does not wake up for nothing.
    if (this.lostMonitorTimer || lost().length === 0) return;
    this.lostMonitorTimer = setInterval(() => {
      const watched = lost();
      if (watched.length === 0) {
        clearInterval(this.lostMonitorTimer);
        this.lostMonitorTimer = undefined;
      }
      for (const record of watched) {
        if (isProcessRunning(record.pid)) continue;
        void this.locks.run(record.id, async () => {
          const current = this.view.get(record.id);
          if (current?.monitorLost && current.status !== 'stopped' && !isProcessRunning(current.pid)) {
            this.markStopped(current, undefined);
          }
        });
      }
    }, LOST_MONITOR_POLL_MS);
    this.lostMonitorTimer.unref();
  }

  /**
   * Changes to the view go through these three, so the store and the revision follow them (the one exception, a
   * policy restart's count, moves the revision itself and is persisted by the recreate that follows).
   */
  private persist(record: ContainerRecord): void {
    this.deps.repository.save(record);
    this.revision++;
  }

  /** persist, and the events of the change in the same transaction (see EventBus.atomically). */
  private persistWith(record: ContainerRecord, announce?: () => void): void {
    if (!announce) {
      this.persist(record);
      return;
    }
    this.deps.events.atomically(() => {
      this.persist(record);
      announce();
    });
  }

  private admit(record: ContainerRecord): void {
    this.deps.repository.insert(record);
    this.view.set(record.id, record);
    this.revision++;
  }

  private forget(id: string): void {
    this.deps.repository.remove(id);
    this.view.delete(id);
    this.revision++;
  }

  /** With `attributes` (a reconcile), the transition found publishes its event(s) with them. */
  private applyRuntimeState(
    record: ContainerRecord,
    state: RuntimeState,
    attributes?: EventAttributes,
  ): void {
    if (state.status === 'stopped') {
      this.markStopped(record, undefined, attributes);
      return;
    }
    const before = record.status;
    record.status = state.status === 'creating' ? 'created' : state.status;
    record.pid = state.pid;
    if (record.status === 'running' && !record.startedAt) record.startedAt = new Date().toISOString();
    this.persistWith(record, () => {
      if (!attributes || before === record.status) return;
      if (before === 'created' && record.status !== 'created') {
        this.deps.events.publish('start', record.id, { pid: record.pid, ...attributes });
      }
      if (record.status === 'paused') this.deps.events.publish('pause', record.id, attributes);
      if (before === 'paused' && record.status === 'running')
        this.deps.events.publish('resume', record.id, attributes);
    });
  }

  private async processTemplate(record: ContainerRecord): Promise<OciProcess> {
    const cached = this.processTemplates.get(record.id);
    if (cached) return cached;
    // runcd's own copy, the one runc ran: the caller's config.json may have changed since it was checked.
    // Without it (a container adopted from elsewhere) exec gets a bare process: no capabilities at all.
    const text = await readFile(this.deps.conmon.filesFor(record.id).bundleConfig, 'utf8').catch(() => '{}');
    const spec = JSON.parse(text) as OciSpec;
    const template = spec.process ?? { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/' };
    this.processTemplates.set(record.id, template);
    return template;
  }

  /** False only when runc says the container is gone or stopped; a runtime that cannot answer is no proof. */
  private async stillRunning(id: string): Promise<boolean> {
    try {
      const state = await this.deps.runc.state(id);
      return state.status !== 'stopped';
    } catch (error) {
      return !(error instanceof RuntimeError && error.kind === 'not_found');
    }
  }

  private require(id: string): ContainerRecord {
    const record = this.view.get(id);
    if (!record) throw containerNotFound(id);
    return record;
  }

  private requireLive(id: string): ContainerRecord {
    const record = this.require(id);
    if (record.status === 'stopped' || record.status === 'creating') {
      throw new ConflictError('container_not_running', `container "${id}" is not running`, id);
    }
    return record;
  }

  /** Turns a runtime failure into the domain error a caller sees; domain errors pass through unchanged. */
  private translate(error: unknown, id: string, command: string): DomainError {
    if (error instanceof DomainError) return error;
    if (!(error instanceof RuntimeError)) {
      return new RuntimeFailureError('runtime_failed', `${command} failed: ${(error as Error).message}`, id);
    }
    const message = error.runtimeMessage;
    switch (error.kind) {
      case 'not_found':
        return new NotFoundError(
          'container_not_found',
          `container "${id}" does not exist in the runtime`,
          id,
        );
      case 'already_running':
        return new ConflictError('container_already_running', message, id);
      case 'stopped':
        return new ConflictError('container_stopped', message, id);
      case 'not_running':
        return new ConflictError('container_not_running', message, id);
      case 'paused':
        return new ConflictError('container_paused', message, id);
      case 'not_stopped':
        return new ConflictError('container_not_stopped', message, id);
      case 'executable_not_found':
        return new InvalidInputError('executable_not_found', message, id);
      case 'not_executable':
      case 'invalid_cwd':
      case 'invalid_user':
        return new InvalidInputError(error.kind, message, id);
      case 'died':
        return new ConflictError(
          'container_stopped',
          `the container stopped during ${command}: ${message}`,
          id,
        );
      case 'timeout':
        return new TimeoutError('runtime_timeout', message, id);
      default:
        return command === 'create'
          ? new RuntimeRejectedError(
              'runtime_create_failed',
              `runtime could not create the container: ${message}`,
              id,
            )
          : new RuntimeFailureError('runtime_failed', `${command} failed: ${message}`, id);
    }
  }
}

function shouldRestart(record: ContainerRecord): boolean {
  const policy = record.restartPolicy;
  if (policy.name === 'always') return true;
  if (policy.name !== 'on-failure' || record.exitCode === 0) return false;
  return policy.maxRetries === undefined || record.restartCount < policy.maxRetries;
}

function waitResultOf(record: ContainerRecord): Omit<WaitResult, 'timedOut'> {
  return { exitCode: record.exitCode, oomKilled: record.oomKilled, finishedAt: record.finishedAt };
}

function toContainer(record: ContainerRecord): Container {
  return {
    id: record.id,
    status: record.status,
    pid: record.pid,
    bundle: record.bundle,
    rootfs: record.rootfs,
    created: record.created,
    ociVersion: record.ociVersion,
    owner: record.owner,
    labels: record.labels,
    exitCode: record.exitCode,
    oomKilled: record.oomKilled,
    startedAt: record.startedAt,
    finishedAt: record.finishedAt,
    restartPolicy: record.restartPolicy,
    restartCount: record.restartCount,
    stopSignal: signalName(record.stopSignal) ?? String(record.stopSignal),
    stopTimeout: record.stopTimeout,
    monitor: record.monitorLost ? 'lost' : 'ok',
  };
}

function toContainerStats(id: string, stats: RuntimeStats): ContainerStats {
  const limit = (value: number) => (value <= 0 || value >= UNLIMITED ? null : value);
  return {
    id,
    time: new Date().toISOString(),
    cpu: {
      usageNanoseconds: stats.cpu.total,
      userNanoseconds: stats.cpu.user,
      kernelNanoseconds: stats.cpu.kernel,
    },
    memory: {
      usageBytes: stats.memory.usage,
      limitBytes: limit(stats.memory.limit),
      maxUsageBytes: stats.memory.max,
    },
    pids: { current: stats.pids.current, limit: limit(stats.pids.limit) },
  };
}

/** uid → name from the container's own /etc/passwd (absent in a bare busybox rootfs). */
async function readPasswd(rootfs: string): Promise<Map<number, string>> {
  const users = new Map<number, string>();
  const text = await readFile(join(rootfs, 'etc', 'passwd'), 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [name, , uid] = line.split(':');
    if (name && uid && /^\d+$/.test(uid)) users.set(Number(uid), name);
  }
  if (!users.has(0)) users.set(0, 'root');
  return users;
}

/** The container's own process settings (user, capabilities, rlimits...) with the caller's command on top. */
export function buildExecProcess(template: OciProcess, request: ExecBody): OciProcess {
  const env = new Map<string, string>();
  for (const entry of [...(template.env ?? []), ...(request.env ?? [])]) {
    const eq = entry.indexOf('=');
    env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  let user = template.user;
  if (request.user) {
    const [uid, gid] = request.user.split(':').map(Number);
    user = { uid: uid!, gid: gid ?? uid! };
  }
  return {
    ...template,
    terminal: false,
    args: request.args,
    env: [...env].map(([key, value]) => `${key}=${value}`),
    cwd: request.cwd ?? template.cwd ?? '/',
    user,
  };
}

/** Resolves true when `promise` settles within `ms`, false otherwise. */
function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
