import type { ContainerEvent, EventType } from '../schemas/events.js';
import type { EventQuery, EventRepository } from '../store/event-repository.js';

export type EventAttributes = ContainerEvent['attributes'];
export type EventListener = (event: ContainerEvent) => void;

const MAX_TIMER_MS = 2 ** 31 - 1;

/** Where a stream of events goes: write() answers false when its reader is behind, until drained(). */
export interface EventSink {
  write(event: ContainerEvent): boolean;
  drained(): Promise<void>;
}

/** Events read from the store at a time while a stream catches up. */
const CATCH_UP_PAGE = 256;

/** Persists every lifecycle event (so `since` replays history across daemon restarts) and fans it out live. */
export class EventBus {
  private readonly listeners = new Set<EventListener>();
  /** Events of the transaction in progress, handed to listeners once it has committed. */
  private pending: ContainerEvent[] | undefined;
  published = 0;

  constructor(private readonly repository: EventRepository) {}

  publish(type: EventType, id: string, attributes: EventAttributes = {}): ContainerEvent {
    const event = this.repository.append({ time: new Date().toISOString(), type, id, attributes });
    this.published++;
    if (this.pending) this.pending.push(event);
    else this.notify(event);
    return event;
  }

  /**
   * `write` (the store's state change) and the events it publishes in one transaction. Listeners hear the events
   * after the commit, so a listener's failure cannot undo the change.
   */
  atomically(write: () => void): void {
    if (this.pending) {
      write();
      return;
    }
    const pending: ContainerEvent[] = [];
    this.pending = pending;
    try {
      this.repository.transaction(write);
    } finally {
      this.pending = undefined;
    }
    for (const event of pending) this.notify(event);
  }

  private notify(event: ContainerEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  history(query: EventQuery): ContainerEvent[] {
    return this.repository.query(query);
  }

  /**
   * Feeds `sink` the stored events from `since` (when given), then live ones, in seq order with no gap and no
   * duplicate, until `until` has passed (and everything up to it was written) or `signal` aborts.
   *
   * The store is the buffer: when the sink asks to pause, live events stop going to it, and once it has drained
   * it reads the store from the last event it got until it has caught up, then goes live again. So no reader
   * makes the bus (or runcd) hold events for it: one that never reads costs its sink's high-water mark, and one
   * that is slow loses nothing unless it falls behind the store's retention (the oldest events are pruned).
   */
  async stream(
    options: { since?: string | undefined; until?: string | undefined },
    sink: EventSink,
    signal: AbortSignal,
  ): Promise<void> {
    const { since, until } = options;
    let lastSeq = since === undefined ? this.repository.lastSeq() : 0;
    let live = false;
    let fellBehind: (() => void) | undefined;
    let failure: unknown;
    const unsubscribe = this.subscribe((event) => {
      if (!live || event.seq <= lastSeq) return;
      lastSeq = event.seq;
      if (until !== undefined && event.time > until) return;
      let keepsUp = false;
      try {
        keepsUp = sink.write(event);
      } catch (error) {
        // This runs inside publish(), inside a lifecycle operation: a sink's failure ends its stream, never
        // the operation.
        failure = error;
      }
      if (!keepsUp) {
        live = false;
        fellBehind?.();
      }
    });
    const aborted = new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    let untilPassed = false;
    let timer: NodeJS.Timeout | undefined;
    const untilReached = new Promise<void>((resolve) => {
      if (until === undefined) return;
      const pass = () => {
        untilPassed = true;
        resolve();
      };
      // setTimeout takes at most 2^31-1 ms (24.8 days) and fires at once above that: a far `until` re-arms.
      const arm = () => {
        const remaining = Date.parse(until) - Date.now();
        if (remaining <= 0) pass();
        else timer = setTimeout(arm, Math.min(remaining, MAX_TIMER_MS));
      };
      arm();
    });
    // Waits for the sink; answers whether the stream goes on.
    const goesOn = async (wait: Promise<void>): Promise<boolean> => {
      await Promise.race([wait, aborted]);
      return !signal.aborted;
    };
    try {
      for (;;) {
        if (!(await goesOn(sink.drained()))) return;
        const page = this.repository.query({ since, until, afterSeq: lastSeq, limit: CATCH_UP_PAGE });
        if (page.length === 0) {
          if (untilPassed) return;
          // In the same tick as the query that found nothing more: every event published from here on reaches
          // the listener.
          live = true;
          const behind = new Promise<void>((resolve) => (fellBehind = resolve));
          await Promise.race([behind, aborted, untilReached]);
          if (live) return;
          if (failure !== undefined) throw failure;
          continue;
        }
        for (const event of page) {
          lastSeq = event.seq;
          if (!sink.write(event) && !(await goesOn(sink.drained()))) return;
        }
      }
    } finally {
      unsubscribe();
      clearTimeout(timer);
    }
  }
}
