import type { Db } from './database.js';

/** The exit of a deleted container, kept so a late `wait` still gets the exit code. */
export interface ExitTombstone {
  id: string;
  exitCode: number | null;
  oomKilled: boolean;
  finishedAt: string | null;
  removedAt: string;
}

interface TombstoneRow {
  id: string;
  exit_code: number | null;
  oom_killed: number;
  finished_at: string | null;
  removed_at: string;
}

export class TombstoneRepository {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      put: db.prepare(
        `INSERT OR REPLACE INTO exit_tombstones (id, exit_code, oom_killed, finished_at, removed_at)
         VALUES (@id, @exit_code, @oom_killed, @finished_at, @removed_at)`,
      ),
      get: db.prepare<[string], TombstoneRow>('SELECT * FROM exit_tombstones WHERE id = ?'),
      remove: db.prepare<[string]>('DELETE FROM exit_tombstones WHERE id = ?'),
      prune: db.prepare<[string]>('DELETE FROM exit_tombstones WHERE removed_at < ?'),
    };
  }

  put(tombstone: ExitTombstone): void {
    this.statements.put.run({
      id: tombstone.id,
      exit_code: tombstone.exitCode,
      oom_killed: tombstone.oomKilled ? 1 : 0,
      finished_at: tombstone.finishedAt,
      removed_at: tombstone.removedAt,
    });
  }

  get(id: string): ExitTombstone | undefined {
    const row = this.statements.get.get(id);
    if (!row) return undefined;
    return {
      id: row.id,
      exitCode: row.exit_code,
      oomKilled: row.oom_killed === 1,
      finishedAt: row.finished_at,
      removedAt: row.removed_at,
    };
  }

  /** A new container with the same id supersedes the old exit. */
  remove(id: string): void {
    this.statements.remove.run(id);
  }

  pruneRemovedBefore(time: string): void {
    this.statements.prune.run(time);
  }
}
