import type { BundleReservation, BundleService } from '../bundles/bundle-service.js';
import { ConflictError } from '../errors.js';
import type { ContainerService } from '../lifecycle/container-service.js';
import type { CreateContainerRequest } from '../schemas/bundle.js';
import type { Container } from '../schemas/container.js';

/**
 * Creating a container, the use case above both services: POST /containers in its three body forms (a bundle
 * path, a managed `bundleId`, a private `spec` + `rootfsFrom`) and Docker's create all come here. The bundle
 * service resolves the body to the bundle runc runs and holds it for the container (so it cannot be deleted or
 * re-uploaded meanwhile); the container service creates the container; a failed create hands the bundle back.
 * When a container is deleted its bundles are released, and a private one removed, from here too, so neither
 * service knows the other.
 */
export class ContainerCreation {
  private unsubscribe: (() => void) | undefined;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly containers: ContainerService,
    private readonly bundles: Pick<BundleService, 'reserve' | 'releaseFor' | 'forgetContainersExcept'>,
  ) {}

  /** After both services' init: bundles held for containers that are gone are released, then deletes are followed. */
  async init(): Promise<void> {
    await this.bundles.forgetContainersExcept(new Set(this.containers.list().map((each) => each.id)));
    this.unsubscribe = this.containers.events.subscribe((event) => {
      if (event.type !== 'delete') return;
      const release = this.bundles.releaseFor(event.id).finally(() => this.pending.delete(release));
      this.pending.add(release);
    });
  }

  /** Stops following deletes and lets releases already under way finish (they use the store). */
  async close(): Promise<void> {
    this.unsubscribe?.();
    await Promise.allSettled([...this.pending]);
  }

  async create(request: CreateContainerRequest): Promise<Container> {
    const { bundle, bundleId, spec, rootfsFrom, ...options } = request;
    if (this.containers.has(options.id)) {
      throw new ConflictError('container_exists', `container "${options.id}" already exists`, options.id);
    }
    let reservation: BundleReservation | undefined;
    try {
      reservation = await this.bundles.reserve(options.id, { bundle, bundleId, spec, rootfsFrom });
      return await this.containers.create({
        ...options,
        bundle: reservation.bundlePath,
        expectedConfigDigest: reservation.expectedConfigDigest,
      });
    } catch (error) {
      await reservation?.release();
      throw error;
    }
  }
}
