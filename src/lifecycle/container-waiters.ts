import { containerNotFound } from '../errors.js';
import type { WaitResult } from '../schemas/container.js';
import type { ContainerRecord } from '../store/container-repository.js';
import type { TombstoneRepository } from '../store/tombstone-repository.js';

/** `next-exit`: the container's next stop, even when it is stopped now (Docker's, for `docker start -a`). */
export type WaitCondition = 'stopped' | 'removed' | 'next-exit';

type Waiter = (condition: WaitCondition, result: WaitResult) => void;

/** Exit codes of deleted containers stay readable through wait for at least 5 minutes. */
export const TOMBSTONE_RETENTION_MS = 10 * 60_000;

/** Who waits for a container to stop or be removed, and the exits of deleted containers (tombstones). */
export class ContainerWaiters {
  private readonly waiters = new Map<string, Set<Waiter>>();

  constructor(
    private readonly tombstones: Pick<TombstoneRepository, 'get' | 'put' | 'remove' | 'pruneRemovedBefore'>,
  ) {}

  pruneTombstones(): void {
    this.tombstones.pruneRemovedBefore(new Date(Date.now() - TOMBSTONE_RETENTION_MS).toISOString());
  }

  /** A new container with the id of a deleted one: its old exit is no longer the answer. */
  forgetTombstone(id: string): void {
    this.tombstones.remove(id);
  }

  /** The exit a deleted container leaves for wait (called in the delete's transaction). */
  bury(record: ContainerRecord): void {
    this.tombstones.put({ id: record.id, ...waitResultOf(record), removedAt: new Date().toISOString() });
  }

  /**
   * Registers a waiter before anything else can happen, so a container that exits right after the call cannot
   * race past it. Answers at once when the condition already holds; a deleted container answers from its tombstone.
   */
  waitFor(
    id: string,
    record: ContainerRecord | undefined,
    condition: WaitCondition,
  ): { result: Promise<WaitResult>; cancel: () => void } {
    if (!record) {
      const tombstone = this.tombstones.get(id);
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
    const waiter = this.register(id, condition === 'next-exit' ? 'stopped' : condition);
    return { result: waiter.promise, cancel: waiter.cancel };
  }

  register(
    id: string,
    condition: 'stopped' | 'removed',
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

  notify(record: ContainerRecord, condition: 'stopped' | 'removed'): void {
    const result = { ...waitResultOf(record), timedOut: false };
    for (const waiter of [...(this.waiters.get(record.id) ?? [])]) waiter(condition, result);
  }
}

function waitResultOf(record: ContainerRecord): Omit<WaitResult, 'timedOut'> {
  return { exitCode: record.exitCode, oomKilled: record.oomKilled, finishedAt: record.finishedAt };
}

/** Resolves true when `promise` settles within `ms`, false otherwise. */
export function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
