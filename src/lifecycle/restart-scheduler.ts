/**
 * The time and timers the restart policy reads. A seam for tests only: unit tests pass a fake clock to step
 * through the backoff and the caller-kill window without waiting; runcd uses the real one.
 */
export interface RestartClock {
  now(): number;
  setTimeout(run: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const SYSTEM_CLOCK: RestartClock = {
  now: () => Date.now(),
  setTimeout: (run, ms) => {
    const timer = setTimeout(run, ms);
    // A restart waiting for its delay does not keep a stopping runcd alive.
    timer.unref();
    return timer;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * Delays policy restarts with exponential backoff: 100 ms, doubling per consecutive restart, capped at 30 s. A
 * container that ran for at least 10 s before dying starts again from 100 ms, as Docker resets its backoff.
 */
export class RestartScheduler {
  private readonly timers = new Map<string, unknown>();
  /** Restarts whose delay ended and that have not finished yet. */
  private readonly restarting = new Set<string>();
  private readonly consecutive = new Map<string, number>();

  static readonly INITIAL_DELAY_MS = 100;
  static readonly MAX_DELAY_MS = 30_000;
  static readonly RESET_AFTER_RUNNING_MS = 10_000;

  constructor(
    private readonly restart: (id: string) => Promise<void>,
    private readonly clock: RestartClock = SYSTEM_CLOCK,
  ) {}

  schedule(id: string, ranForMs: number): number {
    this.cancel(id);
    const step = ranForMs >= RestartScheduler.RESET_AFTER_RUNNING_MS ? 0 : (this.consecutive.get(id) ?? 0);
    this.consecutive.set(id, step + 1);
    const delay = Math.min(RestartScheduler.INITIAL_DELAY_MS * 2 ** step, RestartScheduler.MAX_DELAY_MS);
    const timer = this.clock.setTimeout(() => {
      this.timers.delete(id);
      this.restarting.add(id);
      void this.restart(id).finally(() => this.restarting.delete(id));
    }, delay);
    this.timers.set(id, timer);
    return delay;
  }

  /**
   * A restart is waiting for its delay, or its delay ended and the restart has not finished (it may be waiting
   * for the container's lock): a caller's stop then still stops something (Docker's 204, not 304).
   */
  pending(id: string): boolean {
    return this.timers.has(id) || this.restarting.has(id);
  }

  cancel(id: string): void {
    if (this.timers.has(id)) this.clock.clearTimeout(this.timers.get(id));
    this.timers.delete(id);
  }

  /** Forget the backoff of a container that is gone or was restarted by its caller. */
  reset(id: string): void {
    this.cancel(id);
    this.consecutive.delete(id);
  }

  cancelAll(): void {
    for (const timer of this.timers.values()) this.clock.clearTimeout(timer);
    this.timers.clear();
  }
}
