import type { Logger } from 'pino';
import type { RestartPolicy } from '../schemas/container.js';
import type { Signal } from '../signals.js';
import type { ContainerRepository } from '../store/container-repository.js';
import type { TombstoneRepository } from '../store/tombstone-repository.js';
import type { BundleInspector } from '../bundle-checks/bundle-inspector.js';
import type { ContainerMonitor, ContainerRuntime } from './container-instances.js';
import type { EventBus } from './event-bus.js';
import type { RestartClock } from './restart-scheduler.js';

/** The bundle checks the lifecycle asks for at create and exec. */
export type ContainerBundleChecks = Pick<BundleInspector, 'inspect' | 'checkExecProcess' | 'checkExecPaths'>;

export interface ContainerServiceDeps {
  repository: Pick<ContainerRepository, 'all' | 'insert' | 'save' | 'remove'>;
  tombstones: Pick<TombstoneRepository, 'get' | 'put' | 'remove' | 'pruneRemovedBefore'>;
  events: EventBus;
  runc: ContainerRuntime;
  conmon: ContainerMonitor;
  bundles: ContainerBundleChecks;
  logger: Logger;
  execOutputLimitBytes?: number;
  /** The restart policy's time and timers (tests pass a fake one); the system clock by default. */
  restartClock?: RestartClock;
}

export interface CreateContainerInput {
  id: string;
  bundle: string;
  labels?: Record<string, string> | undefined;
  start?: boolean | undefined;
  restartPolicy?: RestartPolicy | undefined;
  stopSignal?: Signal | undefined;
  stopTimeout?: number | undefined;
  /** For a bundle runcd wrote: the digest of the config.json it wrote; a config changed since is refused. */
  expectedConfigDigest?: string | undefined;
  /** Deleted once it stops and no restart follows (`docker run --rm`); persisted with the container. */
  autoRemove?: boolean | undefined;
}
