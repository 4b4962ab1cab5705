import type { Db } from './database.js';
import type { ContainerEvent, EventType } from '../schemas/events.js';

interface EventRow {
  seq: number;
  time: string;
  type: string;
  container_id: string;
  attributes: string;
}

export interface EventQuery {
  since?: string | undefined;
  until?: string | undefined;
  afterSeq?: number | undefined;
  /** At most this many, oldest first (all when absent). */
  limit?: number | undefined;
}

/** Events stay queryable for replay (`GET /events?since=`); the oldest are pruned past this many. */
const RETAINED_EVENTS = 100_000;

export class EventRepository {
  private readonly statements;
  private appendsSincePrune = 0;

  constructor(private readonly db: Db) {
    this.statements = {
      append: db.prepare<[string, string, string, string]>(
        'INSERT INTO events (time, type, container_id, attributes) VALUES (?, ?, ?, ?)',
      ),
      query: db.prepare<[string, string, number, number], EventRow>(
        'SELECT * FROM events WHERE time >= ? AND time <= ? AND seq > ? ORDER BY seq LIMIT ?',
      ),
      lastSeq: db.prepare<[], { seq: number | null }>('SELECT MAX(seq) AS seq FROM events'),
      prune: db.prepare<[number]>('DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?'),
    };
  }

  /**
   * Runs `write` (other repositories' writes on the same database included) as one transaction: a SIGKILL
   * lands before all of it or after all of it, so a state change and its event are never kept one without the other.
   */
  transaction(write: () => void): void {
    this.db.transaction(write)();
  }

  append(event: Omit<ContainerEvent, 'seq'>): ContainerEvent {
    const result = this.statements.append.run(
      event.time,
      event.type,
      event.id,
      JSON.stringify(event.attributes),
    );
    if (++this.appendsSincePrune >= 1000) {
      this.appendsSincePrune = 0;
      this.statements.prune.run(RETAINED_EVENTS);
    }
    return { seq: Number(result.lastInsertRowid), ...event };
  }

  /** The seq of the latest event stored (0 when there is none). */
  lastSeq(): number {
    return this.statements.lastSeq.get()?.seq ?? 0;
  }

  query(query: EventQuery): ContainerEvent[] {
    return this.statements.query
      .all(query.since ?? '', query.until ?? '\uffff', query.afterSeq ?? 0, query.limit ?? -1)
      .map((row) => ({
        seq: row.seq,
        time: row.time,
        type: row.type as EventType,
        id: row.container_id,
        attributes: JSON.parse(row.attributes) as Record<string, string | number | boolean | null>,
      }));
  }
}
