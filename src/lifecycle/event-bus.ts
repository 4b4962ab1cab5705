import type { ContainerEvent, EventType } from '../schemas/events.js';
import type { EventQuery, EventRepository } from '../store/event-repository.js';

export type EventAttributes = ContainerEvent['attributes'];
export type EventListener = (event: ContainerEvent) => void;

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
}
