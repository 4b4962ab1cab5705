import type { Db } from './database.js';

/**
 * Docker names that differ from the container's runc id: after `docker rename`, or for a container created under
 * a name whose runc id was still taken (compose renames the old container, then creates the new one under the
 * old name). A container without a row is named by its id.
 */
export class DockerNameRepository {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      nameOf: db.prepare<[string], { name: string }>('SELECT name FROM docker_names WHERE container_id = ?'),
      idOf: db.prepare<[string], { container_id: string }>(
        'SELECT container_id FROM docker_names WHERE name = ?',
      ),
      set: db.prepare<[string, string]>(
        `INSERT INTO docker_names (container_id, name) VALUES (?, ?)
         ON CONFLICT (container_id) DO UPDATE SET name = excluded.name`,
      ),
      remove: db.prepare<[string]>('DELETE FROM docker_names WHERE container_id = ?'),
      all: db.prepare<[], { container_id: string; name: string }>(
        'SELECT container_id, name FROM docker_names',
      ),
    };
  }

  nameOf(containerId: string): string | undefined {
    return this.statements.nameOf.get(containerId)?.name;
  }

  idOf(name: string): string | undefined {
    return this.statements.idOf.get(name)?.container_id;
  }

  /** Throws SQLite's UNIQUE constraint error when another container holds the name. */
  set(containerId: string, name: string): void {
    this.statements.set.run(containerId, name);
  }

  remove(containerId: string): void {
    this.statements.remove.run(containerId);
  }

  all(): Array<{ containerId: string; name: string }> {
    return this.statements.all.all().map((row) => ({ containerId: row.container_id, name: row.name }));
  }
}
