/**
 * A counting semaphore with a bounded wait queue: at most `limit` holders at a time, at most `queueLimit`
 * waiters; `tryAcquire` answers `undefined` when both are full so the caller can refuse at once instead of
 * piling up work. FIFO, so a steady stream of new callers cannot starve an old one.
 */
export class ConcurrencyLimiter {
  private active = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(
    readonly limit: number,
    readonly queueLimit: number,
  ) {
    if (!(limit >= 1)) throw new RangeError(`concurrency limit must be at least 1; got ${limit}`);
    if (!(queueLimit >= 0)) throw new RangeError(`queue limit must be at least 0; got ${queueLimit}`);
  }

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiters.length;
  }

  /**
   * Resolves with a release function once a slot is free. With `force`, the call queues even when the queue is
   * full (for work that must finish what an admitted caller started).
   */
  tryAcquire(options: { force?: boolean } = {}): Promise<() => void> | undefined {
    if (this.active < this.limit) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiters.length >= this.queueLimit && !options.force) return undefined;
    return new Promise((resolve) => this.waiters.push(() => resolve(this.releaser())));
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      // The slot passes straight to the next waiter, so `active` only drops when nobody is waiting.
      if (next) next();
      else this.active--;
    };
  }
}
