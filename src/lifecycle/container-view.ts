import { containerNotFound } from '../errors.js';
import type { Container, ContainerStatus } from '../schemas/container.js';
import { signalName } from '../signals.js';
import type { ContainerRecord, ContainerRepository } from '../store/container-repository.js';
import type { EventBus } from './event-bus.js';

export interface ContainerFilter {
  status?: ContainerStatus | undefined;
  labels?: Array<[string, string]> | undefined;
}

/**
 * runcd's in-memory view of its containers, kept exact by its own operations and conmon's exit files so reads
 * never spawn runc. Every change goes through persist/persistWith/admit/forget, so the store and the revision
 * follow it.
 */
export class ContainerView {
  private readonly records = new Map<string, ContainerRecord>();
  /**
   * Moves on with every change a read can show (a persisted record, one added or removed), so an answer built
   * from the view at one revision stays exact until it moves: GET /containers serves its bytes from that.
   */
  private revisionNumber = 0;

  constructor(
    private readonly repository: Pick<ContainerRepository, 'all' | 'insert' | 'save' | 'remove'>,
    private readonly events: Pick<EventBus, 'atomically'>,
  ) {}

  /** The store's rows, at startup. */
  load(): void {
    for (const record of this.repository.all()) this.records.set(record.id, record);
  }

  get revision(): number {
    return this.revisionNumber;
  }

  /** A change the store gets later (a policy restart's count, persisted by the recreate that follows). */
  touch(): void {
    this.revisionNumber++;
  }

  find(id: string): ContainerRecord | undefined {
    return this.records.get(id);
  }

  has(id: string): boolean {
    return this.records.has(id);
  }

  require(id: string): ContainerRecord {
    const record = this.records.get(id);
    if (!record) throw containerNotFound(id);
    return record;
  }

  /** A copy: callers may change records while going through it. */
  all(): ContainerRecord[] {
    return [...this.records.values()];
  }

  list(filter: ContainerFilter = {}): Container[] {
    const result: Container[] = [];
    for (const record of this.records.values()) {
      if (filter.status && record.status !== filter.status) continue;
      if (filter.labels?.some(([key, value]) => record.labels[key] !== value)) continue;
      result.push(toContainer(record));
    }
    return result;
  }

  persist(record: ContainerRecord): void {
    this.repository.save(record);
    this.revisionNumber++;
  }

  /** persist, and the events of the change in the same transaction (see EventBus.atomically). */
  persistWith(record: ContainerRecord, announce?: () => void): void {
    if (!announce) {
      this.persist(record);
      return;
    }
    this.events.atomically(() => {
      this.persist(record);
      announce();
    });
  }

  admit(record: ContainerRecord): void {
    this.repository.insert(record);
    this.records.set(record.id, record);
    this.revisionNumber++;
  }

  forget(id: string): void {
    this.repository.remove(id);
    this.records.delete(id);
    this.revisionNumber++;
  }
}

export function toContainer(record: ContainerRecord): Container {
  return {
    id: record.id,
    status: record.status,
    pid: record.pid,
    bundle: record.bundle,
    rootfs: record.rootfs,
    created: record.created,
    ociVersion: record.ociVersion,
    owner: record.owner,
    labels: record.labels,
    exitCode: record.exitCode,
    oomKilled: record.oomKilled,
    startedAt: record.startedAt,
    finishedAt: record.finishedAt,
    restartPolicy: record.restartPolicy,
    restartCount: record.restartCount,
    stopSignal: signalName(record.stopSignal) ?? String(record.stopSignal),
    stopTimeout: record.stopTimeout,
    autoRemove: record.autoRemove,
    monitor: record.monitorLost ? 'lost' : 'ok',
  };
}
