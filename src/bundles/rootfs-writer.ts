import type { CodeOfKind } from '../error-catalog.js';
import { constants } from 'node:fs';
import {
  chmod,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  rm,
  symlink,
  unlink,
  utimes,
} from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';

/**
 * Writes a rootfs entry by entry into a fresh directory that only runcd writes to, whatever the entries claim.
 * Both rootfs sources (a tarball, an imported directory) go through it, so both get the same rules:
 *
 * - a path is relative, without `..`: anything else is refused, never rewritten;
 * - nothing is ever written through a symlink: parents are created here and lstat'ed one by one (a parent that
 *   is a symlink is refused), files are opened O_CREAT|O_EXCL|O_NOFOLLOW;
 * - a symlink may not climb out of the rootfs (`../../etc`); an absolute target is fine, because it is resolved
 *   inside the container's root, and runcd itself never follows a rootfs symlink on the host;
 * - a hard link must point at an entry already written in this rootfs;
 * - device nodes, FIFOs and sockets are refused;
 * - the bytes of regular files and the number of entries are capped (a tar bomb, a gzip bomb, an inode bomb).
 *
 * Ownership, permission bits (setuid included: the bundle directory is 0700, so no host user can reach them, and
 * every container runs with noNewPrivileges) and times are kept.
 */

export interface EntryMeta {
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
}

export interface RootfsLimits {
  maxBytes: number;
  maxEntries: number;
}

/** An entry runcd refuses to write; the message names it. */
export class RootfsEntryError extends Error {
  constructor(
    readonly code: CodeOfKind<'invalid_input'>,
    message: string,
  ) {
    super(message);
    this.name = 'RootfsEntryError';
  }
}

/** The rootfs would be larger than the quota. */
export class RootfsQuotaError extends Error {
  override name = 'RootfsQuotaError';
}

const ERRNO_INPUT = new Set(['ENAMETOOLONG', 'EINVAL', 'ENOTDIR', 'EEXIST', 'EISDIR', 'ELOOP', 'EMLINK']);

export class RootfsWriter {
  sizeBytes = 0;
  entryCount = 0;
  private readonly directoryTimes: Array<[string, Date]> = [];

  constructor(
    /** A directory runcd just created (mode 0700); nothing else writes into it. */
    readonly root: string,
    private readonly limits: RootfsLimits,
  ) {}

  async directory(name: string, meta: EntryMeta): Promise<void> {
    const parts = this.entryParts(name);
    if (parts.length === 0) return; // the rootfs itself ("./")
    await this.guard(name, async () => {
      this.count(name);
      const path = await this.parentsOf(name, parts);
      const existing = await lstat(path).catch(() => undefined);
      if (existing && !existing.isDirectory()) await unlink(path);
      if (!existing?.isDirectory()) await mkdir(path, { mode: 0o700 });
      await lchown(path, meta.uid, meta.gid);
      await chmod(path, meta.mode & 0o7777);
      this.directoryTimes.push([path, meta.mtime]);
    });
  }

  async file(name: string, meta: EntryMeta, content: Readable | AsyncIterable<Buffer>): Promise<void> {
    const parts = this.requireParts(name);
    await this.guard(name, async () => {
      this.count(name);
      const path = await this.replaceable(name, parts);
      const handle = await open(
        path,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o600,
      );
      try {
        for await (const chunk of content as AsyncIterable<Buffer>) {
          this.sizeBytes += chunk.length;
          if (this.sizeBytes > this.limits.maxBytes) {
            throw new RootfsQuotaError(
              `the rootfs is larger than the quota of ${this.limits.maxBytes} bytes (--max-rootfs-bytes); stopped at "${name}"`,
            );
          }
          let offset = 0;
          while (offset < chunk.length) {
            const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset);
            offset += bytesWritten;
          }
        }
        // chown first: it clears setuid/setgid bits, which the chmod then restores.
        await handle.chown(meta.uid, meta.gid);
        await handle.chmod(meta.mode & 0o7777);
        await handle.utimes(meta.mtime, meta.mtime);
      } finally {
        await handle.close();
      }
    });
  }

  async symlink(name: string, target: string, meta: EntryMeta): Promise<void> {
    const parts = this.requireParts(name);
    if (target === '' || target.includes('\0')) {
      throw new RootfsEntryError('rootfs_link_invalid', `symlink "${name}" has an empty or invalid target`);
    }
    if (!target.startsWith('/')) {
      const resolved = posix.normalize(posix.join(posix.dirname(parts.join('/')), target));
      if (resolved === '..' || resolved.startsWith('../')) {
        throw new RootfsEntryError(
          'rootfs_link_outside',
          `symlink "${name}" points outside the rootfs (${target})`,
        );
      }
    }
    await this.guard(name, async () => {
      this.count(name);
      const path = await this.replaceable(name, parts);
      await symlink(target, path);
      await lchown(path, meta.uid, meta.gid);
      await lutimes(path, meta.mtime, meta.mtime);
    });
  }

  async hardlink(name: string, target: string): Promise<void> {
    const parts = this.requireParts(name);
    let targetParts: string[];
    try {
      targetParts = this.requireParts(target);
    } catch {
      throw new RootfsEntryError(
        'rootfs_link_outside',
        `hard link "${name}" points outside the rootfs (${target})`,
      );
    }
    await this.guard(name, async () => {
      this.count(name);
      const targetPath = await this.existingPath(target, targetParts);
      const info = await lstat(targetPath).catch(() => undefined);
      if (!info || info.isDirectory()) {
        throw new RootfsEntryError(
          'rootfs_link_invalid',
          `hard link "${name}" points at "${target}", which is not a file written before it`,
        );
      }
      const path = await this.replaceable(name, parts);
      await link(targetPath, path);
    });
  }

  refuse(name: string, kind: string): never {
    throw new RootfsEntryError(
      kind === 'character-device' || kind === 'block-device'
        ? 'rootfs_device_node'
        : 'rootfs_entry_unsupported',
      `entry "${name}" is a ${kind.replace('-', ' ')}; ${kind.endsWith('device') ? 'device nodes are never created in a rootfs (runc makes /dev)' : 'only files, directories and links are supported'}`,
    );
  }

  /** Directory times last: writing their entries changed them. */
  async finish(): Promise<void> {
    for (const [path, mtime] of this.directoryTimes.reverse()) await utimes(path, mtime, mtime);
  }

  private count(name: string): void {
    this.entryCount++;
    if (this.entryCount > this.limits.maxEntries) {
      throw new RootfsQuotaError(
        `the rootfs has more than ${this.limits.maxEntries} entries; stopped at "${name}"`,
      );
    }
  }

  /** Splits and checks an entry path; [] is the rootfs itself. */
  private entryParts(name: string): string[] {
    if (name.includes('\0')) throw new RootfsEntryError('rootfs_unsafe_path', 'an entry name contains NUL');
    if (name.startsWith('/')) {
      throw new RootfsEntryError('rootfs_unsafe_path', `entry "${name}" has an absolute path`);
    }
    const parts = name.split('/').filter((part) => part !== '' && part !== '.');
    if (parts.includes('..')) {
      throw new RootfsEntryError('rootfs_unsafe_path', `entry "${name}" contains ".."`);
    }
    return parts;
  }

  private requireParts(name: string): string[] {
    const parts = this.entryParts(name);
    if (parts.length === 0) {
      throw new RootfsEntryError('rootfs_unsafe_path', `entry "${name}" names the rootfs itself`);
    }
    return parts;
  }

  /** Creates missing parents (0755, as tar does) and returns the entry's host path; never passes a symlink. */
  private async parentsOf(name: string, parts: string[]): Promise<string> {
    let current = this.root;
    for (const part of parts.slice(0, -1)) {
      current = join(current, part);
      const info = await lstat(current).catch(() => undefined);
      if (!info) {
        await mkdir(current, { mode: 0o755 });
        continue;
      }
      if (info.isSymbolicLink()) {
        throw new RootfsEntryError(
          'rootfs_through_symlink',
          `entry "${name}" would be written through the symlink "${current.slice(this.root.length + 1)}"`,
        );
      }
      if (!info.isDirectory()) {
        throw new RootfsEntryError(
          'rootfs_unsafe_path',
          `entry "${name}" is inside "${current.slice(this.root.length + 1)}", which is not a directory`,
        );
      }
    }
    return join(current, parts.at(-1)!);
  }

  /** Host path of an entry already written, reached without passing a symlink. */
  private async existingPath(name: string, parts: string[]): Promise<string> {
    let current = this.root;
    for (const part of parts.slice(0, -1)) {
      current = join(current, part);
      const info = await lstat(current).catch(() => undefined);
      if (!info?.isDirectory()) {
        throw new RootfsEntryError(
          'rootfs_link_invalid',
          `link target "${name}" is not reachable inside the rootfs without following a symlink`,
        );
      }
    }
    return join(current, parts.at(-1)!);
  }

  /** The entry's host path with whatever was there before removed (a later entry wins, as in tar); a directory
   * is not replaced by a non-directory. */
  private async replaceable(name: string, parts: string[]): Promise<string> {
    const path = await this.parentsOf(name, parts);
    const existing = await lstat(path).catch(() => undefined);
    if (existing?.isDirectory()) {
      throw new RootfsEntryError('rootfs_unsafe_path', `entry "${name}" would replace a directory`);
    }
    if (existing) await unlink(path);
    return path;
  }

  /** fs errors an entry caused become a refusal naming the entry; refusals and quota pass through. */
  private async guard(name: string, write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (error) {
      if (error instanceof RootfsEntryError || error instanceof RootfsQuotaError) throw error;
      const code = (error as NodeJS.ErrnoException).code;
      if (code && ERRNO_INPUT.has(code)) {
        throw new RootfsEntryError('rootfs_entry_failed', `entry "${name}" cannot be written: ${code}`);
      }
      throw error;
    }
  }
}

/** Removes a partial rootfs; never follows a symlink in it (rm unlinks links, it does not descend). */
export async function discardTree(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}
