import type { ContainerRecord } from '../store/container-repository.js';
import { RestartScheduler, SYSTEM_CLOCK, type RestartClock } from './restart-scheduler.js';

/** A container that dies this soon after a caller's kill was stopped by the caller: no policy restart. */
export const CALLER_KILL_WINDOW_MS = 10_000;

/**
 * When runcd restarts a container that died: its restart policy, unless the death was the caller's (a stop, or
 * a kill shortly before), after the scheduler's backoff. Also knows the caller restarts in flight, which are not
 * the end of an auto-remove container.
 */
export class RestartPolicy {
  /** id → time until which a death counts as caller-requested (Infinity after an explicit stop). */
  private readonly callerStops = new Map<string, number>();
  private readonly callerRestarts = new Set<string>();
  private readonly scheduler: RestartScheduler;

  constructor(
    restart: (id: string) => Promise<void>,
    private readonly clock: RestartClock = SYSTEM_CLOCK,
  ) {
    this.scheduler = new RestartScheduler(restart, clock);
  }

  /** A caller's kill: a death within the window is theirs. */
  callerKilled(id: string): void {
    this.callerStops.set(
      id,
      Math.max(this.callerStops.get(id) ?? 0, this.clock.now() + CALLER_KILL_WINDOW_MS),
    );
  }

  /** A caller's stop or delete: no policy restart until the container is started again. */
  callerStopped(id: string): void {
    this.scheduler.cancel(id);
    this.callerStops.set(id, Infinity);
  }

  /** A caller's start or restart: a later death is the policy's again. */
  callerStarted(id: string): void {
    this.callerStops.delete(id);
  }

  isCallerStop(id: string): boolean {
    return (this.callerStops.get(id) ?? 0) > this.clock.now();
  }

  /** Schedules the policy restart of a container that just died; false when none follows. */
  afterExit(record: ContainerRecord, ranForMs: number): boolean {
    if (!shouldRestart(record) || this.isCallerStop(record.id)) return false;
    this.scheduler.schedule(record.id, ranForMs);
    return true;
  }

  pending(id: string): boolean {
    return this.scheduler.pending(id);
  }

  /** Forget the backoff of a container restarted by its caller. */
  reset(id: string): void {
    this.scheduler.reset(id);
  }

  /** The container is gone. */
  forget(id: string): void {
    this.scheduler.reset(id);
    this.callerStops.delete(id);
  }

  async duringCallerRestart<T>(id: string, run: () => Promise<T>): Promise<T> {
    this.callerRestarts.add(id);
    try {
      return await run();
    } finally {
      this.callerRestarts.delete(id);
    }
  }

  isCallerRestarting(id: string): boolean {
    return this.callerRestarts.has(id);
  }

  cancelAll(): void {
    this.scheduler.cancelAll();
  }
}

function shouldRestart(record: ContainerRecord): boolean {
  const policy = record.restartPolicy;
  if (policy.name === 'always' || policy.name === 'unless-stopped') return true;
  if (policy.name !== 'on-failure' || record.exitCode === 0) return false;
  return policy.maxRetries === undefined || record.restartCount < policy.maxRetries;
}
