import type { Logger } from 'pino';
import type { ContainerInstances } from './container-instances.js';
import type { ContainerView } from './container-view.js';
import type { KeyedMutex } from './keyed-mutex.js';
import type { RestartPolicy } from './restart-policy.js';

export interface AutoRemovalParts {
  view: ContainerView;
  instances: ContainerInstances;
  policy: RestartPolicy;
  locks: KeyedMutex;
  logger: Logger;
  closed: () => boolean;
}

/**
 * `autoRemove` (`docker run --rm`): a container that stops with no restart to follow is deleted, with its
 * events. It is a persisted property, so a runcd restarted after the container stopped still removes it.
 */
export class AutoRemoval {
  constructor(private readonly parts: AutoRemovalParts) {}

  /**
   * Scheduled after the exit's own handling (the `die` is published from inside it, under the lock) and rechecked
   * under the lock, since a caller may have deleted, or be restarting, it meanwhile.
   */
  schedule(id: string): void {
    const { view, instances, policy, locks, logger, closed } = this.parts;
    setImmediate(() => {
      if (closed()) return;
      void locks
        .run(id, async () => {
          const record = view.find(id);
          if (!record?.autoRemove || record.status !== 'stopped' || record.intent) return;
          if (policy.isCallerRestarting(id) || policy.pending(id)) return;
          await instances.delete(record);
          logger.info({ containerId: id }, 'auto-removed');
        })
        .catch((error: unknown) => logger.error({ containerId: id, err: error }, 'auto-removal failed'));
    });
  }

  /** At startup: stopped while runcd was down, or just before it was killed; removed now, as they would have been. */
  sweep(): void {
    for (const record of this.parts.view.all()) {
      if (record.autoRemove && record.status === 'stopped') this.schedule(record.id);
    }
  }
}
