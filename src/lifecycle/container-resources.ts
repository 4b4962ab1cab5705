import { ConflictError, RuntimeRejectedError } from '../errors.js';
import { CPU_PERIOD_MICROS, mergeResources, resourceUpdate } from '../bundles/config-generator.js';
import type { BundleService } from '../bundles/bundle-service.js';
import type { Conmon } from '../runtime/conmon.js';
import type { OciSpec } from '../runtime/oci.js';
import { RuntimeError, type Runc } from '../runtime/runc.js';
import type { ContainerResources, ResourceLimits } from '../schemas/bundle.js';
import { assertAllowed } from './container-states.js';
import type { ContainerService } from './container-service.js';
import { RunningConfig } from './running-config.js';

/**
 * PATCH /containers/ID/resources: `runc update` on a live container, then the same limits written into runcd's
 * own copy of its config.json (the one runc reads on a restart), so a restart keeps them.
 */
export class ContainerResourceService {
  private readonly config: RunningConfig;

  constructor(
    private readonly containers: Pick<ContainerService, 'get'>,
    private readonly bundles: Pick<BundleService, 'checkResources'>,
    private readonly runc: Pick<Runc, 'update'>,
    conmon: Pick<Conmon, 'filesFor'>,
  ) {
    this.config = new RunningConfig(conmon);
  }

  async update(id: string, limits: ResourceLimits): Promise<ContainerResources> {
    assertAllowed('update', this.containers.get(id));
    this.bundles.checkResources(limits);
    try {
      await this.runc.update(id, resourceUpdate(limits));
    } catch (error) {
      if (error instanceof RuntimeError && ['not_running', 'stopped', 'not_found'].includes(error.kind)) {
        throw new ConflictError('container_not_running', `container "${id}" is not running`, id);
      }
      if (error instanceof RuntimeError) {
        throw new RuntimeRejectedError(
          'runtime_update_failed',
          `runtime could not update the resources: ${error.runtimeMessage}`,
          id,
        );
      }
      throw error;
    }
    const running = await this.config.read(id);
    if (!running) {
      // As before this accessor existed: a 500, since only a container adopted from outside runcd lacks it.
      throw new Error(
        `container "${id}" has no config of runcd's own (adopted from outside runcd): its limits were changed but cannot be kept for a restart`,
      );
    }
    const spec = mergeResources(running, limits);
    await this.config.replace(id, spec);
    return { id, ...limitsOf(spec) };
  }
}

/** The limits a config's `linux.resources` sets; null where it sets none. */
export function limitsOf(spec: OciSpec): Omit<ContainerResources, 'id'> {
  const resources = (spec.linux?.resources ?? {}) as {
    memory?: { limit?: number };
    cpu?: { quota?: number; period?: number };
    pids?: { limit?: number };
  };
  const quota = resources.cpu?.quota;
  return {
    memoryBytes: resources.memory?.limit ?? null,
    cpus: quota !== undefined && quota > 0 ? quota / (resources.cpu?.period ?? CPU_PERIOD_MICROS) : null,
    pidsLimit: resources.pids?.limit ?? null,
  };
}
