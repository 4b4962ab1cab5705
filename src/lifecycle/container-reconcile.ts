import type { Logger } from 'pino';
import { isProcessRunning } from '../runtime/procfs.js';
import type { RuntimeState } from '../runtime/runc.js';
import type { ContainerStatus } from '../schemas/container.js';
import type { ContainerRecord } from '../store/container-repository.js';
import {
  DEFAULT_STOP_TIMEOUT_SECONDS,
  type ContainerInstances,
  type ContainerMonitor,
  type ContainerRuntime,
} from './container-instances.js';
import type { ContainerView } from './container-view.js';
import type { EventAttributes, EventBus } from './event-bus.js';
import type { KeyedMutex } from './keyed-mutex.js';
import type { RestartPolicy } from './restart-policy.js';
import { isNotFound } from './runtime-error-translation.js';

/** The mark on events a restarted runcd publishes for what it found or finished at startup. */
export const RECONCILED: EventAttributes = { reconciled: true };

/** How often the init of a container without its monitor is looked for in /proc (nobody else reports its end). */
const LOST_MONITOR_POLL_MS = 500;
const SIGTERM = 15;

export interface ReconcilerParts {
  runc: ContainerRuntime;
  conmon: ContainerMonitor;
  events: EventBus;
  logger: Logger;
  view: ContainerView;
  instances: ContainerInstances;
  policy: RestartPolicy;
  locks: KeyedMutex;
}

/**
 * Startup reconciliation. Exits that happened while runcd was down come from conmon's exit files (and emit
 * their `die` event once); operations a killed runcd was in the middle of are finished (a create from conmon's
 * report in the sync FIFO, a delete or restart from the intent persisted before its first step); runc
 * containers in runcd's root without a row are adopted. Every transition found or finished here publishes its
 * event, marked `reconciled`, once: the row is persisted in its new state before the event is.
 */
export class Reconciler {
  private lostMonitorTimer: NodeJS.Timeout | undefined;

  constructor(private readonly parts: ReconcilerParts) {}

  async reconcile(): Promise<void> {
    const live = new Map<string, RuntimeState>();
    for (const state of await this.parts.runc.list()) live.set(state.id, state);
    for (const record of this.parts.view.all()) {
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
    for (const state of live.values()) this.adopt(state);
  }

  /** A runc container in runcd's root without a row: kept, with the defaults of a create that gave nothing. */
  private adopt(state: RuntimeState): void {
    this.parts.logger.warn(
      { containerId: state.id, status: state.status },
      'adopting runtime container without a record',
    );
    const record: ContainerRecord = {
      id: state.id,
      // Admitted as creating, then moved to what runc says through the state table like any other change.
      status: 'creating',
      pid: 0,
      bundle: state.bundle,
      rootfs: state.rootfs,
      created: state.created,
      ociVersion: state.ociVersion,
      owner: state.owner || this.parts.instances.owner,
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
      autoRemove: false,
    };
    this.parts.view.admit(record);
    this.parts.instances.applyRuntimeState(record, state);
  }

  /** A row that is not in the middle of an operation, against what runc and conmon say now. */
  private async reconcileInstance(record: ContainerRecord, state: RuntimeState | undefined): Promise<void> {
    const { instances, conmon, logger, view, events } = this.parts;
    if (record.status === 'stopped') return;
    const exit = await conmon.readExit(record.id);
    if (exit) {
      instances.markStopped(record, exit, RECONCILED);
      return;
    }
    if (!state) {
      logger.warn({ containerId: record.id }, 'container vanished from the runtime; marking stopped');
      instances.markStopped(record, undefined, RECONCILED);
      return;
    }
    instances.applyRuntimeState(record, state, RECONCILED);
    // (re-read: applyRuntimeState may have stopped it, which TypeScript's narrowing above cannot know)
    if ((record.status as ContainerStatus) === 'stopped' || record.monitorLost) return;
    if (await conmon.monitorAlive(record.id)) return;
    // conmon writes the exit file and then exits: an exit between the two reads above is an ordinary one.
    const lateExit = await conmon.readExit(record.id);
    if (lateExit) {
      instances.markStopped(record, lateExit, RECONCILED);
      return;
    }
    record.monitorLost = true;
    view.persistWith(record, () =>
      events.publish('monitor-lost', record.id, { status: record.status, ...RECONCILED }),
    );
    logger.warn(
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
    const { instances, conmon, runc, logger, view, events } = this.parts;
    const id = record.id;
    let state = found;
    if ((!state || state.status === 'creating') && (await conmon.monitorAlive(id))) {
      const report = await conmon.awaitInterruptedCreate(id);
      if (report && 'error' in report) {
        logger.warn({ containerId: id, error: report.error }, 'interrupted create had failed');
      }
      state = await runc.state(id).catch(() => undefined);
    }
    if (!state || state.status === 'creating') {
      logger.warn({ containerId: id }, 'undoing a create that never finished');
      if (record.intent !== 'restart') {
        await instances.discardFailedCreate(id);
        return;
      }
      await runc.delete(id, { force: true }).catch(() => undefined);
      await conmon.waitForMonitorExit(id);
      await conmon.clearExit(id);
      instances.backToStopped(record);
      return;
    }
    instances.becameCreated(record, state.pid, state.created);
    // A restart announces itself with its own event, as an uninterrupted one does.
    const restarting = record.intent === 'restart';
    if (restarting) this.announceInterruptedRestart(record);
    else
      view.persistWith(record, () => events.publish('create', id, { bundle: record.bundle, ...RECONCILED }));
    logger.warn({ containerId: id, pid: record.pid }, 'finished a create runcd was killed in');
    await this.reconcileInstance(record, state);
    if (restarting) await this.finishInterruptedRestart(record);
  }

  /**
   * Once the restart's new instance exists, before anything it did (a `die`) is published. The intent goes with
   * the event: a runcd killed after this announces nothing twice (it leaves a created container as it is).
   */
  private announceInterruptedRestart(record: ContainerRecord): void {
    record.intent = null;
    this.parts.view.persistWith(record, () =>
      this.parts.events.publish('restart', record.id, { restartCount: record.restartCount, ...RECONCILED }),
    );
  }

  /** A restart whose new instance exists: started if the killed runcd did not get that far. */
  private async finishInterruptedRestart(record: ContainerRecord): Promise<void> {
    if (record.status === 'created' && !record.monitorLost) {
      try {
        await this.parts.instances.start(record);
        await this.parts.instances.refreshExit(record);
      } catch (error) {
        this.parts.logger.error(
          { containerId: record.id, err: error },
          'start of an interrupted restart failed',
        );
      }
    }
  }

  /** A delete runcd was killed in: its intent was persisted before `runc delete`, so it is finished now. */
  private async finishInterruptedDelete(record: ContainerRecord): Promise<void> {
    this.parts.policy.callerStopped(record.id);
    try {
      await this.parts.runc.delete(record.id, { force: true });
    } catch (error) {
      if (!isNotFound(error)) {
        // The row stays, with its intent, so the next start (or the caller's next delete) tries again.
        this.parts.logger.error(
          { containerId: record.id, err: error },
          'finishing an interrupted delete failed',
        );
        return;
      }
    }
    this.parts.logger.warn({ containerId: record.id }, 'finishing a delete runcd was killed in');
    await this.parts.instances.completeDelete(record, RECONCILED);
  }

  /**
   * Nobody writes the exit of a container whose monitor is gone, so its init is looked for in /proc instead: its
   * end is noticed (stopped, exit code unknown) and `stop`, `kill` and `wait` still answer.
   */
  watchLostMonitors(): void {
    const lost = () =>
      this.parts.view
        .all()
        .filter(
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
        void this.parts.locks.run(record.id, async () => {
          const current = this.parts.view.find(record.id);
          if (current?.monitorLost && current.status !== 'stopped' && !isProcessRunning(current.pid)) {
            this.parts.instances.markStopped(current, undefined);
          }
        });
      }
    }, LOST_MONITOR_POLL_MS);
    this.lostMonitorTimer.unref();
  }

  close(): void {
    clearInterval(this.lostMonitorTimer);
  }
}
