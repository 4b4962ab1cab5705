import { readFile, rename, writeFile } from 'node:fs/promises';
import { ConflictError, RuntimeRejectedError } from '../errors.js';
import type { ContainerService } from '../lifecycle/container-service.js';
import type { Conmon } from '../runtime/conmon.js';
import type { OciSpec } from '../runtime/oci.js';
import { RuntimeError, type Runc } from '../runtime/runc.js';
import type { ContainerResources, ResourceLimits } from '../schemas/bundle.js';
import { CPU_PERIOD_MICROS, mergeResources, resourceUpdate } from './config-generator.js';
import type { BundleService } from './bundle-service.js';

/**
 * PATCH /containers/ID/resources: `runc update` on a live container, then the same limits written into runcd's
 * own copy of its config.json (the one runc reads on a restart), so a restart keeps them.
 */
export class ContainerResourceService {
  constructor(
    private readonly containers: ContainerService,
    private readonly bundles: BundleService,
    private readonly runc: Runc,
    private readonly conmon: Conmon,
  ) {}

  async update(id: string, limits: ResourceLimits): Promise<ContainerResources> {
    const container = this.containers.get(id);
    if (container.status === 'stopped' || container.status === 'creating') {
      throw new ConflictError(
        'container_not_running',
        `cannot change the resources of a container that is ${container.status}`,
        id,
      );
    }
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
    const path = this.conmon.filesFor(id).bundleConfig;
    const spec = mergeResources(JSON.parse(await readFile(path, 'utf8')) as OciSpec, limits);
    await writeFile(`${path}.new`, JSON.stringify(spec, null, 2) + '\n', { mode: 0o600 });
    await rename(`${path}.new`, path);
    return { id, ...limitsOf(spec) };
  }
}

/** The limits a config's `linux.resources` sets; null where it sets none. */
function limitsOf(spec: OciSpec): Omit<ContainerResources, 'id'> {
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
