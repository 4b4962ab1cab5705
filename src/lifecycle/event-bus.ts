import type { ContainerEvent, EventType } from '../schemas/events.js';
import type { EventQuery, EventRepository } from '../store/event-repository.js';

export type EventAttributes = ContainerEvent['attributes'];
export type EventListener = (event: ContainerEvent) => void;

/** Persists every lifecycle event (so `since` replays history across daemon restarts) and fans it out live. */
export class EventBus {
  private readonly listeners = new Set<EventListener>();
  published = 0;

  constructor(private readonly repository: EventRepository) {}

  publish(type: EventType, id: string, attributes: EventAttributes = {}): ContainerEvent {
    const event = this.repository.append({ time: new Date().toISOString(), type, id, attributes });
    this.published++;
    for (const listener of this.listeners) listener(event);
    return event;
  }

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  history(query: EventQuery): ContainerEvent[] {
    return this.repository.query(query);
  }
}
