import { createHash } from 'node:crypto';
import type { ContainerService } from '../lifecycle/container-service.js';
import type { DockerNames } from './docker-names.js';
import { DockerError } from './docker-errors.js';

/**
 * Docker clients expect 64-hex ids and print their first 12 characters; runcd ids are names. The Docker id is
 * derived from the runcd id (SHA-256), so it is stable across daemon restarts (and renames) without storing
 * anything.
 */
export function dockerIdOf(runcId: string): string {
  return createHash('sha256').update(`runcd-container:${runcId}`).digest('hex');
}

/**
 * A Docker name (with or without Docker's leading "/"), a full Docker id or a unique prefix of one → the runcd
 * id. The name is the container's Docker name (docker-names.ts): its runc id unless it was renamed.
 */
export function resolveContainer(
  context: { containers: ContainerService; names: DockerNames },
  reference: string,
): string {
  const { containers, names } = context;
  const name = reference.startsWith('/') ? reference.slice(1) : reference;
  const named = names.find(name);
  if (named !== undefined) return named;
  if (/^[0-9a-f]{1,64}$/.test(name)) {
    const matches = containers.list().filter((container) => dockerIdOf(container.id).startsWith(name));
    if (matches.length === 1) return matches[0]!.id;
    if (matches.length > 1) {
      throw new DockerError(400, `multiple containers found with provided prefix: ${name}`);
    }
  }
  throw new DockerError(404, `No such container: ${reference}`);
}
