import type { Db } from './database.js';

/** The write GET /readyz makes: one row rewritten and synced, so a read-only, full or locked store shows up. */
export class ReadinessRepository {
  private readonly touch;

  constructor(db: Db) {
    this.touch = db.prepare<[string]>(
      `INSERT INTO readiness_probe (id, checked_at) VALUES (1, ?)
       ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at`,
    );
  }

  /** Throws whatever SQLite says when the write fails (SQLITE_READONLY, SQLITE_FULL, SQLITE_BUSY...). */
  recordProbe(time: string): void {
    this.touch.run(time);
  }
}
