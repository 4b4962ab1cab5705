import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ConflictError, InvalidInputError, NotFoundError } from '../errors.js';
import type { VolumeRecord, VolumeRepository } from '../store/volume-repository.js';
import { discardTree } from './rootfs-writer.js';

/** Docker's volume name grammar (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`), at most 64 characters. */
const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$/;

export interface Volume extends VolumeRecord {
  /** DIR/NAME/_data: what containers mount. */
  path: string;
}

/**
 * Named volumes: directories runcd owns in its state directory (VOLUMES/NAME/_data, the parent 0700), recorded
 * in the store, outliving the containers that mount them. A container mounts one as a bind mount, which the
 * bundle policy accepts from this directory only (RuncdProvided.volumesDir). The record is written after its
 * directory and removed before it, so a runcd killed in between leaves at most a directory without a record,
 * removed at the next start.
 */
export class VolumeService {
  constructor(private readonly deps: { repository: VolumeRepository; dir: string; logger: Logger }) {}

  async init(): Promise<void> {
    await mkdir(this.deps.dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.deps.dir)) {
      if (this.deps.repository.get(name) === undefined) await discardTree(join(this.deps.dir, name));
    }
    for (const record of this.deps.repository.all()) {
      await mkdir(join(this.deps.dir, record.name, '_data'), { recursive: true, mode: 0o755 });
    }
  }

  list(): Volume[] {
    return this.deps.repository.all().map((record) => this.volumeOf(record));
  }

  get(name: string): Volume {
    const record = this.deps.repository.get(name);
    if (!record) throw new NotFoundError('volume_not_found', `no such volume: ${name}`);
    return this.volumeOf(record);
  }

  /** `docker volume create` and `-v NAME:/path`: an existing volume of that name is answered as it is, as Docker does. */
  async create(name: string, labels: Record<string, string> = {}): Promise<Volume> {
    if (!NAME_PATTERN.test(name)) {
      throw new InvalidInputError(
        'invalid_volume_name',
        `"${name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed (2 to 64 characters)`,
      );
    }
    const existing = this.deps.repository.get(name);
    if (existing) return this.volumeOf(existing);
    await mkdir(join(this.deps.dir, name), { recursive: true, mode: 0o700 });
    await mkdir(join(this.deps.dir, name, '_data'), { recursive: true, mode: 0o755 });
    const record = { name, created: new Date().toISOString(), labels };
    if (this.deps.repository.insert(record)) this.deps.logger.info({ volume: name }, 'volume created');
    return this.get(name);
  }

  /** `docker volume rm`: `users` are the containers that mount it (409 while there are any). */
  async remove(name: string, users: string[]): Promise<void> {
    this.get(name);
    if (users.length > 0) {
      throw new ConflictError('volume_in_use', `remove ${name}: volume is in use - [${users.join(', ')}]`);
    }
    this.deps.repository.remove(name);
    await discardTree(join(this.deps.dir, name));
    this.deps.logger.info({ volume: name }, 'volume removed');
  }

  private volumeOf(record: VolumeRecord): Volume {
    return { ...record, path: join(this.deps.dir, record.name, '_data') };
  }
}
