import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, realpath, rename, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { ContentTooLargeError, DomainError, InvalidInputError } from '../errors.js';
import { discardTree, RootfsEntryError, RootfsQuotaError, RootfsWriter } from './rootfs-writer.js';

/** Entries in one rootfs: a bound on inodes, which a quota on bytes alone does not give. */
export const MAX_ROOTFS_ENTRIES = 500_000;
/** A rootfs being written, and one being replaced, sit beside `rootfs` under this prefix until the swap. */
const TEMP_PREFIX = '.rootfs-';

export interface RootfsState {
  ready: boolean;
  sizeBytes: number;
  fileCount: number;
}

/**
 * How a managed bundle's rootfs gets its files, whatever they come from (an import root, an uploaded tarball, an
 * image runcd unpacked): through a RootfsWriter (quota, entry count, no escaping paths) into a temp dir that is
 * swapped in only once complete, so a refused or broken fill leaves the bundle as it was.
 */
export class RootfsFilling {
  private importRoots: string[] = [];

  constructor(
    private readonly options: {
      /** `--import-root`: the only places `rootfs.path` may copy from. */
      importRoots: readonly string[];
      /** `--max-rootfs-bytes`: bytes of regular files in one rootfs. */
      maxRootfsBytes: number;
    },
  ) {}

  async init(): Promise<void> {
    this.importRoots = await Promise.all(
      this.options.importRoots.map((dir) => realpath(dir).catch(() => dir)),
    );
  }

  get maxRootfsBytes(): number {
    return this.options.maxRootfsBytes;
  }

  /** Removes what an interrupted fill left in bundle `dir`. */
  async discardLeftovers(dir: string): Promise<void> {
    for (const name of await readdir(dir).catch(() => [])) {
      if (name.startsWith(TEMP_PREFIX)) await discardTree(join(dir, name));
    }
  }

  /** `rootfs.path` resolved, and refused unless it is a directory inside an import root. */
  async importSource(path: string): Promise<{ path: string; root: string }> {
    if (this.importRoots.length === 0) {
      throw new InvalidInputError(
        'import_root_not_configured',
        'rootfs.path needs an import root: start runcd with --import-root DIR, or upload a tarball with rootfs: {upload: true}',
      );
    }
    let real: string;
    try {
      real = await realpath(path);
    } catch {
      throw new InvalidInputError('rootfs_not_found', `rootfs.path "${path}" does not exist`);
    }
    const root = this.importRoots.find((dir) => real.startsWith(dir.endsWith(sep) ? dir : dir + sep));
    if (root === undefined) {
      throw new InvalidInputError(
        'rootfs_outside_import_roots',
        `rootfs.path "${path}" is not inside an import root (${this.importRoots.join(', ')})`,
      );
    }
    if (!(await stat(real)).isDirectory()) {
      throw new InvalidInputError('rootfs_not_found', `rootfs.path "${path}" is not a directory`);
    }
    return { path: real, root };
  }

  /** Writes a rootfs through a RootfsWriter into a temp dir in `dir`, then swaps it in as `dir/rootfs`. */
  async fill(dir: string, fill: (writer: RootfsWriter) => Promise<void>): Promise<RootfsState> {
    const temp = await mkdtemp(join(dir, `${TEMP_PREFIX}new-`));
    try {
      const writer = new RootfsWriter(temp, {
        maxBytes: this.options.maxRootfsBytes,
        maxEntries: MAX_ROOTFS_ENTRIES,
      });
      await fill(writer);
      await writer.finish();
      // The container's "/" must be searchable by its non-root users.
      await chmod(temp, 0o755);
      const target = join(dir, 'rootfs');
      const old = join(dir, `${TEMP_PREFIX}old-${randomBytes(4).toString('hex')}`);
      const hadOld = await rename(target, old).then(
        () => true,
        () => false,
      );
      await rename(temp, target);
      if (hadOld) await discardTree(old);
      return { ready: true, sizeBytes: writer.sizeBytes, fileCount: writer.entryCount };
    } catch (error) {
      await discardTree(temp);
      throw rootfsError(error);
    }
  }
}

function rootfsError(error: unknown): unknown {
  if (error instanceof DomainError) return error;
  if (error instanceof RootfsQuotaError) return new ContentTooLargeError('rootfs_too_large', error.message);
  if (error instanceof RootfsEntryError) return new InvalidInputError(error.code, error.message);
  return error;
}
