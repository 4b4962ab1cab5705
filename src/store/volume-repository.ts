import type { Db } from './database.js';

export interface VolumeRecord {
  name: string;
  created: string;
  labels: Record<string, string>;
}

interface VolumeRow {
  name: string;
  created: string;
  labels: string;
}

const recordOf = (row: VolumeRow): VolumeRecord => ({
  name: row.name,
  created: row.created,
  labels: JSON.parse(row.labels) as Record<string, string>,
});

/** Named volumes runcd made (their directories are STATE_DIR/volumes/NAME). */
export class VolumeRepository {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      all: db.prepare<[], VolumeRow>('SELECT * FROM volumes ORDER BY name'),
      get: db.prepare<[string], VolumeRow>('SELECT * FROM volumes WHERE name = ?'),
      insert: db.prepare<[string, string, string]>(
        'INSERT INTO volumes (name, created, labels) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING',
      ),
      remove: db.prepare<[string]>('DELETE FROM volumes WHERE name = ?'),
    };
  }

  all(): VolumeRecord[] {
    return this.statements.all.all().map(recordOf);
  }

  get(name: string): VolumeRecord | undefined {
    const row = this.statements.get.get(name);
    return row && recordOf(row);
  }

  /** False when a volume of that name exists already. */
  insert(record: VolumeRecord): boolean {
    return this.statements.insert.run(record.name, record.created, JSON.stringify(record.labels)).changes > 0;
  }

  remove(name: string): void {
    this.statements.remove.run(name);
  }
}
