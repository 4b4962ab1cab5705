import { userInfo } from 'node:os';
import type { Logger } from 'pino';
import { ConflictError } from '../errors.js';
import type { Conmon, ExitRecord } from '../runtime/conmon.js';
import { RuntimeError, type Runc, type RuntimeState } from '../runtime/runc.js';
import type { ContainerRecord } from '../store/container-repository.js';
import type { InspectedBundle } from '../bundle-checks/bundle-inspector.js';
import type { ContainerNetworkHooks, CreateContainerInput } from './container-service-deps.js';
import { setStatus } from './container-states.js';
import type { ContainerView } from './container-view.js';
import type { ContainerWaiters } from './container-waiters.js';
import type { EventAttributes, EventBus } from './event-bus.js';
import type { ExecProcessTemplates } from './exec-process.js';
import type { RestartPolicy } from './restart-policy.js';
import { isNotFound, translateRuntimeError } from './runtime-error-translation.js';

const SIGTERM = 15;
export const DEFAULT_STOP_TIMEOUT_SECONDS = 10;

/** The runc commands the lifecycle uses: a fake runtime implements these (see test/helpers). */
export type ContainerRuntime = Pick<
  Runc,
  | 'specVersion'
  | 'list'
  | 'state'
  | 'start'
  | 'exec'
  | 'kill'
  | 'delete'
  | 'pause'
  | 'resume'
  | 'ps'
  | 'stats'
  | 'streamStats'
>;

/** What the lifecycle asks conmon: create through the sync pipe, exit files, per-container files. */
export type ContainerMonitor = Pick<
  Conmon,
  | 'exitDir'
  | 'prepare'
  | 'create'
  | 'readExit'
  | 'clearExit'
  | 'filesFor'
  | 'monitorAlive'
  | 'awaitInterruptedCreate'
  | 'waitForMonitorExit'
  | 'removeFiles'
>;

export interface ContainerInstancesParts {
  runc: ContainerRuntime;
  conmon: ContainerMonitor;
  events: EventBus;
  logger: Logger;
  view: ContainerView;
  waiters: ContainerWaiters;
  policy: RestartPolicy;
  templates: ExecProcessTemplates;
  network?: ContainerNetworkHooks | undefined;
  /** A container stopped and no policy restart follows (auto-removal hooks in here). */
  onFinalStop: (record: ContainerRecord) => void;
}

/**
 * The steps that change a container's runtime instance and its record together: create, start, recreate, the
 * exit, a signal, the end of a delete. Callers hold the id's lock and have asked the state table; operations
 * (ContainerService) and reconcile at startup both build on these.
 */
export class ContainerInstances {
  /** runc's `ociVersion` (its spec version), asked once at init so creates need no `runc state`. */
  runtimeSpecVersion: string | undefined;
  readonly owner = userInfo().username;

  constructor(private readonly parts: ContainerInstancesParts) {}

  /**
   * conmon + `runc create` on runcd's checked copy of the record's config (written from `runtimeConfig` on the
   * first create, reused on restarts). Everything `runc state` would add is known without asking it (a `runc
   * state` here cost a whole runc process per create): conmon reports the init pid, runc's ociVersion is its spec
   * version, `created` is when runc create ran, and the owner is runcd's user.
   */
  async create(record: ContainerRecord, runtimeConfig?: string, announce?: () => void): Promise<void> {
    const created = new Date().toISOString();
    const { pid } = await this.parts.conmon.create(record.id, runtimeConfig);
    if (this.parts.network) {
      try {
        // Between create and start: the namespaces exist, the container's process has not run yet.
        await this.parts.network.attach(record.id, pid);
      } catch (error) {
        await this.parts.runc.delete(record.id, { force: true }).catch(() => undefined);
        await this.parts.conmon.waitForMonitorExit(record.id);
        throw error;
      }
    }
    this.becameCreated(record, pid, created);
    this.parts.view.persistWith(record, announce);
  }

  /** The fields of a record whose runtime instance now exists (created, not yet started). */
  becameCreated(record: ContainerRecord, pid: number, created: string): void {
    setStatus(record, 'created');
    Object.assign(record, {
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
  }

  async start(record: ContainerRecord, announce?: () => void): Promise<void> {
    try {
      await this.parts.runc.start(record.id);
    } catch (error) {
      throw translateRuntimeError(error, record.id, 'start');
    }
    setStatus(record, 'running');
    record.startedAt = new Date().toISOString();
    // A restart's intent lasts until here: killed before, the restarted runcd starts the container itself.
    record.intent = null;
    this.parts.view.persistWith(record, announce);
  }

  /**
   * Replaces a stopped container's runtime instance: runc delete, then create and start from the same bundle. The
   * caller publishes `restart` and then looks for an exit, so a container that dies at once has its `die` after
   * the `restart` that began its run.
   */
  async recreate(record: ContainerRecord, announce: () => void): Promise<void> {
    if (record.status !== 'stopped') {
      // Another restart (the policy's) got there between the caller's stop and this step.
      throw new ConflictError(
        'container_not_stopped',
        `container "${record.id}" is ${record.status}`,
        record.id,
      );
    }
    try {
      await this.parts.runc.delete(record.id);
    } catch (error) {
      if (!isNotFound(error)) throw translateRuntimeError(error, record.id, 'delete');
    }
    await this.parts.conmon.waitForMonitorExit(record.id);
    await this.parts.conmon.clearExit(record.id);
    // `creating` with the restart's intent: a runcd killed during the create finishes it (or puts the container
    // back to stopped, its last exit kept) instead of keeping a stopped row over a new runc container.
    setStatus(record, 'creating');
    record.intent = 'restart';
    this.parts.view.persist(record);
    try {
      await this.create(record);
    } catch (error) {
      // The old instance is gone and no new one exists: the container stays stopped with its last exit.
      this.backToStopped(record);
      throw translateRuntimeError(error, record.id, 'create');
    }
    try {
      await this.start(record, announce);
    } finally {
      // A start that failed leaves a created container: nothing is left to finish.
      if (record.intent) {
        record.intent = null;
        this.parts.view.persist(record);
      }
    }
  }

  /** The record of a container about to be created: `creating` until conmon reports the init pid. */
  newRecord(input: CreateContainerInput, bundle: InspectedBundle): ContainerRecord {
    return {
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
      autoRemove: input.autoRemove ?? false,
    };
  }

  /** The policy's restart of a stopped container (the caller holds the lock and asked the policy). */
  async restartByPolicy(record: ContainerRecord): Promise<void> {
    const id = record.id;
    try {
      record.restartCount++;
      // Readable at once; the store gets it with the recreate's own persist below.
      this.parts.view.touch();
      await this.recreate(record, () =>
        this.parts.events.publish('restart', id, { reason: 'policy', restartCount: record.restartCount }),
      );
      await this.refreshExit(record);
      this.parts.logger.info({ containerId: id, restartCount: record.restartCount }, 'restarted by policy');
    } catch (error) {
      this.parts.logger.error({ containerId: id, err: error }, 'restart by policy failed');
    }
  }

  /** A restart's create that failed or was undone: stopped again, its last exit kept. */
  backToStopped(record: ContainerRecord): void {
    setStatus(record, 'stopped');
    record.pid = 0;
    record.intent = null;
    this.parts.view.persist(record);
  }

  paused(record: ContainerRecord): void {
    setStatus(record, 'paused');
    this.parts.view.persistWith(record, () => this.parts.events.publish('pause', record.id));
  }

  resumed(record: ContainerRecord): void {
    setStatus(record, 'running');
    this.parts.view.persistWith(record, () => this.parts.events.publish('resume', record.id));
  }

  /** Marks the record stopped when conmon has written its exit file. */
  async refreshExit(record: ContainerRecord): Promise<void> {
    const exit = await this.parts.conmon.readExit(record.id);
    if (exit) this.markStopped(record, exit);
  }

  markStopped(record: ContainerRecord, exit: ExitRecord | undefined, attributes?: EventAttributes): void {
    const ranForMs = record.startedAt ? Date.now() - Date.parse(record.startedAt) : 0;
    this.parts.network?.release(record.id);
    setStatus(record, 'stopped');
    record.pid = 0;
    record.exitCode = exit?.exitCode ?? null;
    record.oomKilled = exit?.oomKilled ?? false;
    record.finishedAt = exit?.finishedAt ?? new Date().toISOString();
    this.parts.view.persistWith(record, () =>
      this.parts.events.publish('die', record.id, {
        exitCode: record.exitCode,
        oomKilled: record.oomKilled,
        ...attributes,
      }),
    );
    this.parts.logger.info(
      { containerId: record.id, exitCode: record.exitCode, oomKilled: record.oomKilled },
      'container exited',
    );
    this.parts.waiters.notify(record, 'stopped');
    if (!this.parts.policy.afterExit(record, ranForMs)) this.parts.onFinalStop(record);
  }

  /** With `attributes` (a reconcile), the transition found publishes its event(s) with them. */
  applyRuntimeState(record: ContainerRecord, state: RuntimeState, attributes?: EventAttributes): void {
    if (state.status === 'stopped') {
      this.markStopped(record, undefined, attributes);
      return;
    }
    const before = record.status;
    setStatus(record, state.status === 'creating' ? 'created' : state.status);
    record.pid = state.pid;
    if (record.status === 'running' && !record.startedAt) record.startedAt = new Date().toISOString();
    this.parts.view.persistWith(record, () => {
      if (!attributes || before === record.status) return;
      if (before === 'created' && record.status !== 'created') {
        this.parts.events.publish('start', record.id, { pid: record.pid, ...attributes });
      }
      if (record.status === 'paused') this.parts.events.publish('pause', record.id, attributes);
      if (before === 'paused' && record.status === 'running')
        this.parts.events.publish('resume', record.id, attributes);
    });
  }

  /**
   * runc kill; a paused container is resumed afterwards so the signal is actually delivered. With
   * `tolerateExit`, a container that died before the signal reached it (its exit not yet seen) is not an error.
   */
  async signal(record: ContainerRecord, signalNumber: number, tolerateExit = false): Promise<void> {
    try {
      await this.parts.runc.kill(record.id, signalNumber);
      if (record.status === 'paused') {
        await this.parts.runc.resume(record.id);
        setStatus(record, 'running');
        this.parts.view.persist(record);
      }
    } catch (error) {
      const exited =
        error instanceof RuntimeError && (error.kind === 'not_running' || error.kind === 'stopped');
      if (!(tolerateExit && exited)) throw translateRuntimeError(error, record.id, 'kill');
    }
  }

  /** False only when runc says the container is gone or stopped; a runtime that cannot answer is no proof. */
  async stillRunning(id: string): Promise<boolean> {
    try {
      const state = await this.parts.runc.state(id);
      return state.status !== 'stopped';
    } catch (error) {
      return !isNotFound(error);
    }
  }

  /** `runc delete` (force only for a live one) and everything after it; the caller checked the state table. */
  async delete(record: ContainerRecord): Promise<void> {
    const id = record.id;
    this.parts.policy.reset(id);
    this.parts.policy.callerStopped(id);
    // The intent first: from here on a runcd killed at any step finishes the delete when it starts again,
    // instead of leaving a row for a container runc no longer has.
    record.intent = 'delete';
    this.parts.view.persist(record);
    try {
      // `runc delete` kills and removes a created container itself (runc's delete.go): --force only when live.
      await this.parts.runc.delete(id, { force: record.status === 'running' || record.status === 'paused' });
    } catch (error) {
      if (!isNotFound(error)) {
        record.intent = null;
        this.parts.view.persist(record);
        throw translateRuntimeError(error, id, 'delete');
      }
    }
    await this.completeDelete(record);
  }

  /** The steps of a delete after `runc delete`: the exit, the files, the tombstone, the row, the event. */
  async completeDelete(record: ContainerRecord, attributes?: EventAttributes): Promise<void> {
    const id = record.id;
    await this.parts.conmon.waitForMonitorExit(id);
    if (record.status !== 'stopped')
      this.markStopped(record, await this.parts.conmon.readExit(id), attributes);
    await this.parts.conmon.removeFiles(id);
    await this.parts.network?.forget(id);
    this.parts.events.atomically(() => {
      this.parts.waiters.bury(record);
      this.parts.view.forget(id);
      this.parts.events.publish('delete', id, attributes);
    });
    this.parts.templates.forget(id);
    this.parts.policy.forget(id);
    this.parts.waiters.notify(record, 'removed');
    this.parts.logger.info({ containerId: id }, 'container deleted');
  }

  /** A create that failed (or that a killed runcd never finished): nothing of it is left. */
  async discardFailedCreate(id: string): Promise<void> {
    try {
      await this.parts.runc.delete(id, { force: true });
    } catch (error) {
      if (!isNotFound(error)) {
        this.parts.logger.warn(
          { containerId: id, err: error },
          'cleanup after failed create: runtime delete failed',
        );
      }
    }
    await this.parts.conmon.waitForMonitorExit(id);
    await this.parts.conmon.removeFiles(id);
    await this.parts.network?.forget(id);
    this.parts.view.forget(id);
  }
}
