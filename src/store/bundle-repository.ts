import type { BundleSpec } from '../schemas/bundle.js';
import type { Db } from './database.js';

export type RootfsSource = 'import' | 'upload' | 'shared';

/** What runcd persists about a bundle it manages. */
export interface BundleRecord {
  id: string;
  /** BUNDLEROOT/ID */
  path: string;
  created: string;
  labels: Record<string, string>;
  /** The caller's request the config was generated from. */
  spec: BundleSpec;
  /** sha256 of the config.json bytes runcd wrote. */
  configDigest: string;
  /** `import`: copied from an import root; `upload`: a tarball; `shared`: another bundle's rootfs. */
  rootfsSource: RootfsSource;
  /** The imported directory, or the id of the bundle whose rootfs is shared. */
  rootfsOrigin: string | null;
  rootfsReady: boolean;
  sizeBytes: number;
  fileCount: number;
  /** A private bundle belongs to one container and is deleted with it. */
  privateTo: string | null;
}

interface BundleRow {
  id: string;
  path: string;
  created: string;
  labels: string;
  spec: string;
  config_digest: string;
  rootfs_source: string;
  rootfs_origin: string | null;
  rootfs_ready: number;
  size_bytes: number;
  file_count: number;
  private_to: string | null;
}

function fromRow(row: BundleRow): BundleRecord {
  return {
    id: row.id,
    path: row.path,
    created: row.created,
    labels: JSON.parse(row.labels) as Record<string, string>,
    spec: JSON.parse(row.spec) as BundleSpec,
    configDigest: row.config_digest,
    rootfsSource: row.rootfs_source as RootfsSource,
    rootfsOrigin: row.rootfs_origin,
    rootfsReady: row.rootfs_ready === 1,
    sizeBytes: row.size_bytes,
    fileCount: row.file_count,
    privateTo: row.private_to,
  };
}

function toParams(record: BundleRecord) {
  return {
    id: record.id,
    path: record.path,
    created: record.created,
    labels: JSON.stringify(record.labels),
    spec: JSON.stringify(record.spec),
    config_digest: record.configDigest,
    rootfs_source: record.rootfsSource,
    rootfs_origin: record.rootfsOrigin,
    rootfs_ready: record.rootfsReady ? 1 : 0,
    size_bytes: record.sizeBytes,
    file_count: record.fileCount,
    private_to: record.privateTo,
  };
}

export class BundleRepository {
  private readonly statements;

  constructor(private readonly db: Db) {
    this.statements = {
      all: db.prepare<[], BundleRow>('SELECT * FROM bundles ORDER BY created, id'),
      get: db.prepare<[string], BundleRow>('SELECT * FROM bundles WHERE id = ?'),
      byPath: db.prepare<[string], BundleRow>('SELECT * FROM bundles WHERE path = ?'),
      insert: db.prepare(
        `INSERT INTO bundles (id, path, created, labels, spec, config_digest, rootfs_source, rootfs_origin,
           rootfs_ready, size_bytes, file_count, private_to)
         VALUES (@id, @path, @created, @labels, @spec, @config_digest, @rootfs_source, @rootfs_origin,
           @rootfs_ready, @size_bytes, @file_count, @private_to)`,
      ),
      update: db.prepare(
        `UPDATE bundles SET labels = @labels, spec = @spec, config_digest = @config_digest,
           rootfs_source = @rootfs_source, rootfs_origin = @rootfs_origin, rootfs_ready = @rootfs_ready,
           size_bytes = @size_bytes, file_count = @file_count, private_to = @private_to
         WHERE id = @id`,
      ),
      remove: db.prepare<[string]>('DELETE FROM bundles WHERE id = ?'),
      link: db.prepare<[string, string]>(
        'INSERT INTO bundle_containers (container_id, bundle_id) VALUES (?, ?)',
      ),
      unlink: db.prepare<[string, string]>(
        'DELETE FROM bundle_containers WHERE container_id = ? AND bundle_id = ?',
      ),
      unlinkContainer: db.prepare<[string]>('DELETE FROM bundle_containers WHERE container_id = ?'),
      users: db.prepare<[string], { container_id: string }>(
        'SELECT container_id FROM bundle_containers WHERE bundle_id = ? ORDER BY container_id',
      ),
      linkedBundles: db.prepare<[string], { bundle_id: string }>(
        'SELECT bundle_id FROM bundle_containers WHERE container_id = ?',
      ),
      allLinks: db.prepare<[], { container_id: string; bundle_id: string }>(
        'SELECT container_id, bundle_id FROM bundle_containers',
      ),
    };
  }

  all(): BundleRecord[] {
    return this.statements.all.all().map(fromRow);
  }

  get(id: string): BundleRecord | undefined {
    const row = this.statements.get.get(id);
    return row && fromRow(row);
  }

  findByPath(path: string): BundleRecord | undefined {
    const row = this.statements.byPath.get(path);
    return row && fromRow(row);
  }

  insert(record: BundleRecord): void {
    this.statements.insert.run(toParams(record));
  }

  save(record: BundleRecord): void {
    this.statements.update.run(toParams(record));
  }

  remove(id: string): void {
    this.statements.remove.run(id);
  }

  /** Records that `containerId` uses each bundle, all or nothing; false when one of the links already exists. */
  link(containerId: string, bundleIds: readonly string[]): boolean {
    try {
      this.db.transaction(() => {
        for (const bundleId of bundleIds) this.statements.link.run(containerId, bundleId);
      })();
      return true;
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return false;
      throw error;
    }
  }

  unlink(containerId: string, bundleIds: readonly string[]): void {
    this.db.transaction(() => {
      for (const bundleId of bundleIds) this.statements.unlink.run(containerId, bundleId);
    })();
  }

  /** Forgets every bundle the container used; returns their ids. */
  unlinkContainer(containerId: string): string[] {
    const ids = this.statements.linkedBundles.all(containerId).map((row) => row.bundle_id);
    this.statements.unlinkContainer.run(containerId);
    return ids;
  }

  containersUsing(bundleId: string): string[] {
    return this.statements.users.all(bundleId).map((row) => row.container_id);
  }

  links(): Array<{ containerId: string; bundleId: string }> {
    return this.statements.allLinks
      .all()
      .map((row) => ({ containerId: row.container_id, bundleId: row.bundle_id }));
  }
}
