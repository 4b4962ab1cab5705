import type { Logger } from 'pino';
import type { OciSpec } from '../runtime/oci.js';
import type { RestartPolicy } from '../schemas/container.js';
import type { ContainerNetworkState, PortMappingRequest } from '../schemas/network.js';
import type { Signal } from '../signals.js';
import type { ContainerRepository } from '../store/container-repository.js';
import type { TombstoneRepository } from '../store/tombstone-repository.js';
import type { BundleInspector } from '../bundle-checks/bundle-inspector.js';
import type { ContainerMonitor, ContainerRuntime } from './container-instances.js';
import type { EventBus } from './event-bus.js';
import type { RestartClock } from './restart-scheduler.js';

/** The bundle checks the lifecycle asks for at create and exec. */
export type ContainerBundleChecks = Pick<BundleInspector, 'inspect' | 'checkExecProcess' | 'checkExecPaths'>;

/**
 * What the lifecycle asks of container networking (src/network/container-networking.ts): a request checked and
 * stored before anything exists, set up between create and start, torn down at exit and delete.
 */
export interface ContainerNetworkHooks {
  /** The mounts (/etc/hosts, /etc/resolv.conf) to add to the container's config; throws 4xx, creating nothing. */
  prepare(
    containerId: string,
    request: {
      networks?: string[] | undefined;
      ports?: PortMappingRequest[] | undefined;
      aliases?: string[] | undefined;
    },
    spec: OciSpec,
  ): Promise<NonNullable<OciSpec['mounts']>>;
  attach(containerId: string, pid: number): Promise<void>;
  /** A network joins (or leaves) the container: set up (torn down) at once while its namespace is pinned. */
  connect(containerId: string, network: string, aliases: string[]): Promise<void>;
  disconnect(containerId: string, network: string): Promise<void>;
  /** At exit: teardown in the background. */
  release(containerId: string): void;
  forget(containerId: string): Promise<void>;
  describe(containerId: string): ContainerNetworkState | undefined;
  /** `listener` runs when describe()'s answer changes outside the lifecycle's writes (a teardown at exit). */
  watch(listener: () => void): void;
  reconcile(containers: Map<string, { status: string; pid: number }>): Promise<void>;
}

export interface ContainerServiceDeps {
  repository: Pick<ContainerRepository, 'all' | 'insert' | 'save' | 'remove'>;
  tombstones: Pick<TombstoneRepository, 'get' | 'put' | 'remove' | 'pruneRemovedBefore'>;
  events: EventBus;
  runc: ContainerRuntime;
  conmon: ContainerMonitor;
  bundles: ContainerBundleChecks;
  logger: Logger;
  execOutputLimitBytes?: number;
  /** Without it every container has network none (loopback only), as with plain runc. */
  network?: ContainerNetworkHooks;
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
  /** Networks to attach between create and start; absent or ["none"]: loopback only. */
  networks?: string[] | undefined;
  ports?: PortMappingRequest[] | undefined;
  /** Names on its user networks besides its id and hostname. */
  aliases?: string[] | undefined;
}
