import { commitDurably, type Db } from './database.js';
import type { ContainerStatus, RestartPolicy } from '../schemas/container.js';

/**
 * An operation that changes the runtime instance in steps, persisted before its first step so a runcd killed in
 * between finishes it at startup. A first create needs none: its `creating` row says it.
 */
export type ContainerIntent = 'restart' | 'delete';

/** What runcd persists about a container. */
export interface ContainerRecord {
  id: string;
  status: ContainerStatus;
  pid: number;
  bundle: string;
  rootfs: string;
  created: string;
  ociVersion: string;
  owner: string;
  labels: Record<string, string>;
  exitCode: number | null;
  oomKilled: boolean;
  startedAt: string | null;
  finishedAt: string | null;
  configDigest: string;
  restartPolicy: RestartPolicy;
  restartCount: number;
  stopSignal: number;
  stopTimeout: number;
  intent: ContainerIntent | null;
  /** conmon was gone while runc still had the container: nobody records its exit (see the README). */
  monitorLost: boolean;
  /** Deleted by runcd once it stops and no restart follows (`docker run --rm`). */
  autoRemove: boolean;
}

interface ContainerRow {
  id: string;
  status: string;
  bundle: string;
  rootfs: string;
  config_digest: string;
  labels: string;
  pid: number;
  oci_version: string;
  owner: string;
  created: string;
  started_at: string | null;
  finished_at: string | null;
  exit_code: number | null;
  oom_killed: number;
  restart_policy: string;
  restart_count: number;
  stop_signal: number;
  stop_timeout: number;
  intent: string | null;
  monitor_lost: number;
  auto_remove: number;
}

function fromRow(row: ContainerRow): ContainerRecord {
  return {
    id: row.id,
    status: row.status as ContainerStatus,
    bundle: row.bundle,
    rootfs: row.rootfs,
    configDigest: row.config_digest,
    labels: JSON.parse(row.labels) as Record<string, string>,
    pid: row.pid,
    ociVersion: row.oci_version,
    owner: row.owner,
    created: row.created,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    exitCode: row.exit_code,
    oomKilled: row.oom_killed === 1,
    restartPolicy: JSON.parse(row.restart_policy) as RestartPolicy,
    restartCount: row.restart_count,
    stopSignal: row.stop_signal,
    stopTimeout: row.stop_timeout,
    intent: row.intent as ContainerIntent | null,
    monitorLost: row.monitor_lost === 1,
    autoRemove: row.auto_remove === 1,
  };
}

function toParams(record: ContainerRecord) {
  return {
    id: record.id,
    status: record.status,
    bundle: record.bundle,
    rootfs: record.rootfs,
    config_digest: record.configDigest,
    labels: JSON.stringify(record.labels),
    pid: record.pid,
    oci_version: record.ociVersion,
    owner: record.owner,
    created: record.created,
    started_at: record.startedAt,
    finished_at: record.finishedAt,
    exit_code: record.exitCode,
    oom_killed: record.oomKilled ? 1 : 0,
    restart_policy: JSON.stringify(record.restartPolicy),
    restart_count: record.restartCount,
    stop_signal: record.stopSignal,
    stop_timeout: record.stopTimeout,
    intent: record.intent,
    monitor_lost: record.monitorLost ? 1 : 0,
    auto_remove: record.autoRemove ? 1 : 0,
  };
}

export class ContainerRepository {
  private readonly statements;

  constructor(private readonly db: Db) {
    this.statements = {
      all: db.prepare<[], ContainerRow>('SELECT * FROM containers ORDER BY created, id'),
      insert: db.prepare(
        `INSERT INTO containers (id, status, bundle, rootfs, config_digest, labels, pid, oci_version, owner,
           created, started_at, finished_at, exit_code, oom_killed, restart_policy, restart_count, stop_signal,
           stop_timeout, intent, monitor_lost, auto_remove)
         VALUES (@id, @status, @bundle, @rootfs, @config_digest, @labels, @pid, @oci_version, @owner,
           @created, @started_at, @finished_at, @exit_code, @oom_killed, @restart_policy, @restart_count,
           @stop_signal, @stop_timeout, @intent, @monitor_lost, @auto_remove)`,
      ),
      update: db.prepare(
        `UPDATE containers SET status = @status, bundle = @bundle, rootfs = @rootfs, config_digest = @config_digest,
           labels = @labels, pid = @pid, oci_version = @oci_version, owner = @owner, created = @created,
           started_at = @started_at, finished_at = @finished_at, exit_code = @exit_code, oom_killed = @oom_killed,
           restart_policy = @restart_policy, restart_count = @restart_count, stop_signal = @stop_signal,
           stop_timeout = @stop_timeout, intent = @intent, monitor_lost = @monitor_lost,
           auto_remove = @auto_remove
         WHERE id = @id`,
      ),
      remove: db.prepare<[string]>('DELETE FROM containers WHERE id = ?'),
    };
  }

  all(): ContainerRecord[] {
    return this.statements.all.all().map(fromRow);
  }

  /**
   * Throws when the id exists; the caller holds the id's lock, so that only happens on a real duplicate. The row
   * is on disk when this returns (see openDatabase): it must be before anything is spawned for the container.
   */
  insert(record: ContainerRecord): void {
    commitDurably(this.db, () => this.statements.insert.run(toParams(record)));
  }

  save(record: ContainerRecord): void {
    this.statements.update.run(toParams(record));
  }

  remove(id: string): void {
    this.statements.remove.run(id);
  }
}
