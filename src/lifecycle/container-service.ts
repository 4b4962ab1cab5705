import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import type { Logger } from 'pino';
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
import { RuntimeError, type Runc, type RuntimeState } from '../runtime/runc.js';
import type { Container, ContainerStatus, ExecBody, ExecResult } from '../schemas/container.js';
import type { Signal } from '../signals.js';
import type { ContainerRecord, ContainerRepository } from '../store/container-repository.js';
import type { BundleInspector } from './bundle-inspector.js';
import { KeyedMutex } from './keyed-mutex.js';

export interface ContainerServiceDeps {
  repository: ContainerRepository;
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
}

export interface ContainerFilter {
  status?: ContainerStatus | undefined;
  labels?: Array<[string, string]> | undefined;
}

const SIGKILL = 9;
const KILL_SETTLE_TIMEOUT_MS = 2_000;
const DEFAULT_EXEC_OUTPUT_LIMIT = 1024 * 1024;

/**
 * Owns the container state machine (creating → created → running ⇄ paused → stopped), per-id locking and
 * persistence. runc stays the source of truth for live status; the store is the source of truth for what runcd
 * created; the in-memory view is kept exact by runcd's own operations and by conmon's exit files, so reads never
 * spawn runc.
 */
export class ContainerService {
  private readonly view = new Map<string, ContainerRecord>();
  private readonly processTemplates = new Map<string, OciProcess>();
  private readonly exitWaiters = new Map<string, Set<() => void>>();
  private readonly locks = new KeyedMutex();
  private readonly watcher: ExitWatcher;
  private readonly owner = userInfo().username;

  constructor(private readonly deps: ContainerServiceDeps) {
    this.watcher = new ExitWatcher(deps.conmon.exitDir, (id) => void this.onExitFile(id));
  }

  /** Loads the store, reconciles it with the runtime, then starts watching for exits. */
  async init(): Promise<void> {
    await this.deps.conmon.prepare();
    for (const record of this.deps.repository.all()) this.view.set(record.id, record);
    await this.reconcile();
    await this.watcher.start();
  }

  close(): void {
    this.watcher.stop();
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

  async create(input: CreateContainerInput): Promise<Container> {
    const bundle = await this.deps.bundles.inspect(input.bundle);
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
        startedAt: null,
        finishedAt: null,
        configDigest: bundle.configDigest,
        oomKilled: false,
      };
      this.deps.repository.insert(record);
      this.view.set(record.id, record);
      try {
        const { pid } = await this.deps.conmon.create(record.id, bundle.runtimeConfig);
        const state = await this.deps.runc.state(record.id);
        Object.assign(record, {
          status: 'created',
          pid: state.pid || pid,
          created: state.created,
          ociVersion: state.ociVersion,
          owner: state.owner || this.owner,
        });
        this.deps.repository.save(record);
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

  async exec(id: string, request: ExecBody): Promise<ExecResult> {
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
    try {
      return await this.deps.runc.exec(id, process, {
        timeoutMs: request.timeoutSeconds !== undefined ? request.timeoutSeconds * 1000 : undefined,
        outputLimitBytes: this.deps.execOutputLimitBytes ?? DEFAULT_EXEC_OUTPUT_LIMIT,
      });
    } catch (error) {
      throw this.translate(error, id, 'exec');
    }
  }

  /**
   * Delivers a signal. For SIGKILL the answer waits (briefly) until conmon has recorded the exit, so a script
   * that kills and then reads the container sees it stopped, with its exit code, as the seed's walkthrough expects.
   */
  async kill(id: string, signal: Signal): Promise<void> {
    const exited = this.exitPromise(id);
    try {
      await this.locks.run(id, async () => {
        const record = this.require(id);
        if (record.status === 'stopped' || record.status === 'creating') {
          throw new ConflictError('container_not_running', `container "${id}" is not running`, id);
        }
        try {
          await this.deps.runc.kill(id, signal.number);
        } catch (error) {
          throw this.translate(error, id, 'kill');
        }
        this.deps.logger.info({ containerId: id, signal: signal.name }, 'signal sent');
      });
      if (signal.number === SIGKILL) await withTimeout(exited.promise, KILL_SETTLE_TIMEOUT_MS);
    } finally {
      exited.cancel();
    }
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
      try {
        await this.deps.runc.delete(id, { force: record.status !== 'stopped' });
      } catch (error) {
        if (!(error instanceof RuntimeError && error.kind === 'not_found'))
          throw this.translate(error, id, 'delete');
      }
      await this.deps.conmon.waitForMonitorExit(id);
      await this.deps.conmon.removeFiles(id);
      this.deps.repository.remove(id);
      this.view.delete(id);
      this.processTemplates.delete(id);
      this.deps.logger.info({ containerId: id }, 'container deleted');
    });
  }

  private async startLocked(record: ContainerRecord): Promise<void> {
    const id = record.id;
    const refusal: Partial<Record<ContainerStatus, [string, string]>> = {
      running: ['container_already_running', 'cannot start an already running container'],
      paused: ['container_paused', 'cannot start a paused container: resume it instead'],
      stopped: ['container_stopped', 'cannot start a container that has stopped'],
      creating: ['container_not_created', `container "${id}" is still being created`],
    };
    const refused = refusal[record.status];
    if (refused) throw new ConflictError(refused[0], refused[1], id);
    try {
      await this.deps.runc.start(id);
    } catch (error) {
      throw this.translate(error, id, 'start');
    }
    record.status = 'running';
    record.startedAt = new Date().toISOString();
    this.deps.repository.save(record);
    // A process that exits at once may already have its exit file; report it stopped right away.
    await this.refreshExit(record);
    this.deps.logger.info({ containerId: id }, 'container started');
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

  private markStopped(record: ContainerRecord, exit: ExitRecord | undefined): void {
    record.status = 'stopped';
    record.pid = 0;
    record.exitCode = exit?.exitCode ?? null;
    record.oomKilled = exit?.oomKilled ?? false;
    record.finishedAt = exit?.finishedAt ?? new Date().toISOString();
    this.deps.repository.save(record);
    this.deps.logger.info(
      { containerId: record.id, exitCode: record.exitCode, oomKilled: record.oomKilled },
      'container exited',
    );
    for (const wake of this.exitWaiters.get(record.id) ?? []) wake();
  }

  private exitPromise(id: string): { promise: Promise<void>; cancel: () => void } {
    let wake!: () => void;
    const promise = new Promise<void>((resolve) => (wake = resolve));
    const waiters = this.exitWaiters.get(id) ?? new Set();
    waiters.add(wake);
    this.exitWaiters.set(id, waiters);
    return {
      promise,
      cancel: () => {
        waiters.delete(wake);
        if (waiters.size === 0 && this.exitWaiters.get(id) === waiters) this.exitWaiters.delete(id);
      },
    };
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
    this.deps.repository.remove(id);
    this.view.delete(id);
  }

  /**
   * Startup reconciliation. Exits that happened while runcd was down come from conmon's exit files; `creating`
   * rows that never became runc containers are removed; runc containers in runcd's root without a row are adopted.
   */
  private async reconcile(): Promise<void> {
    const live = new Map<string, RuntimeState>();
    for (const state of await this.deps.runc.list()) live.set(state.id, state);
    for (const record of [...this.view.values()]) {
      const state = live.get(record.id);
      live.delete(record.id);
      if (record.status === 'creating' && !state) {
        this.deps.logger.warn({ containerId: record.id }, 'removing container whose create never finished');
        await this.discardFailedCreate(record.id);
        continue;
      }
      const exit = await this.deps.conmon.readExit(record.id);
      if (exit) {
        if (record.status !== 'stopped' || record.exitCode === null) this.markStopped(record, exit);
        continue;
      }
      if (!state) {
        if (record.status !== 'stopped') {
          this.deps.logger.warn(
            { containerId: record.id },
            'container vanished from the runtime; marking stopped',
          );
          this.markStopped(record, undefined);
        }
        continue;
      }
      this.applyRuntimeState(record, state);
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
        startedAt: null,
        finishedAt: null,
        configDigest: '',
        oomKilled: false,
      };
      this.deps.repository.insert(record);
      this.view.set(record.id, record);
      this.applyRuntimeState(record, state);
    }
  }

  private applyRuntimeState(record: ContainerRecord, state: RuntimeState): void {
    if (state.status === 'stopped') {
      this.markStopped(record, undefined);
      return;
    }
    record.status = state.status === 'creating' ? 'created' : state.status;
    record.pid = state.pid;
    if (record.status === 'running' && !record.startedAt) record.startedAt = new Date().toISOString();
    this.deps.repository.save(record);
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

  private require(id: string): ContainerRecord {
    const record = this.view.get(id);
    if (!record) throw containerNotFound(id);
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
  };
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

function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    void promise.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
