import { randomBytes } from 'node:crypto';
import type { ContainerService } from '../lifecycle/container-service.js';
import type { DockerNameRepository } from '../store/docker-name-repository.js';
import { DockerError } from './docker-errors.js';
import { dockerIdOf } from './docker-ids.js';

/** Docker's container name grammar (daemon/names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`), at most runcd's id length. */
const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;

/**
 * A container's Docker name, apart from its runc id, so `docker rename` works: the runc id is fixed for the
 * container's life (runc's state, conmon's files and the store are keyed by it), the name is a row in the store.
 * A container without a row is named by its id, so every container of the native API has a Docker name and
 * nothing is stored for the usual case. A name is resolvable wherever a container reference is (resolveContainer).
 *
 * The row of a deleted container goes with it (on its delete event; at start for one a killed runcd missed).
 */
export class DockerNames {
  private unsubscribe: (() => void) | undefined;
  /** Fresh ids whose create is under way: their rows hold their names although the containers are not there yet. */
  private readonly creating = new Set<string>();

  constructor(
    private readonly repository: DockerNameRepository,
    private readonly containers: ContainerService,
  ) {}

  init(): void {
    for (const { containerId } of this.repository.all()) {
      if (!this.containers.has(containerId)) this.repository.remove(containerId);
    }
    this.unsubscribe = this.containers.events.subscribe((event) => {
      if (event.type === 'delete') this.repository.remove(event.id);
    });
  }

  close(): void {
    this.unsubscribe?.();
  }

  nameOf(containerId: string): string {
    return this.repository.nameOf(containerId) ?? containerId;
  }

  /** The runc id of the container with this Docker name, if one has it. */
  find(name: string): string | undefined {
    const renamed = this.repository.idOf(name);
    if (renamed !== undefined && (this.containers.has(renamed) || this.creating.has(renamed))) return renamed;
    if (this.containers.has(name) && this.repository.nameOf(name) === undefined) return name;
    return undefined;
  }

  /**
   * The runc id for a new container named `name` (`docker create --name`): the name itself while no container
   * has that id; otherwise (the old container compose renamed still has it) a fresh id, the name held in a row
   * from now on. `settle` ends the claim: the row stays when the container was made, and goes when not.
   */
  claimForCreate(name: string): { id: string; settle: (created: boolean) => void } {
    this.requireFree(name, undefined);
    if (!this.containers.has(name) && this.repository.idOf(name) === undefined) {
      return { id: name, settle: () => undefined };
    }
    const id = `runcd_${randomBytes(6).toString('hex')}`;
    this.hold(id, name);
    this.creating.add(id);
    return {
      id,
      settle: (created) => {
        this.creating.delete(id);
        if (!created) this.repository.remove(id);
      },
    };
  }

  /** `docker rename`: 409 when another container has the name. */
  rename(containerId: string, newName: string): void {
    const name = newName.replace(/^\//, '');
    if (name === this.nameOf(containerId)) return;
    this.requireFree(name, containerId);
    if (name === containerId) this.repository.remove(containerId);
    else this.hold(containerId, name);
  }

  private requireFree(name: string, self: string | undefined): void {
    if (!NAME_PATTERN.test(name)) {
      throw new DockerError(
        400,
        `Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (at most 64 characters)`,
      );
    }
    const holder = this.find(name);
    if (holder !== undefined && holder !== self) {
      throw new DockerError(
        409,
        `Conflict. The container name "/${name}" is already in use by container "${dockerIdOf(holder)}". You have to remove (or rename) that container to be able to reuse that name.`,
      );
    }
  }

  /** A row of a container that is gone may still hold the name until init; it is replaced. */
  private hold(containerId: string, name: string): void {
    const stale = this.repository.idOf(name);
    if (stale !== undefined && stale !== containerId) this.repository.remove(stale);
    this.repository.set(containerId, name);
  }
}
