import { once } from 'node:events';
import { constants, type Stats } from 'node:fs';
import {
  lchown,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readlink,
  symlink,
  unlink,
  type FileHandle,
} from 'node:fs/promises';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import tarStream, { type Header } from 'tar-stream';
import { ContentTooLargeError, InvalidInputError, NotFoundError } from '../errors.js';
import { archiveBytes, archiveError } from './tar-extractor.js';
import { RootfsEntryError, RootfsQuotaError } from './rootfs-writer.js';
import { END_OF_ARCHIVE, headerBlocks, padding, type TarHeader } from './tar-writer.js';

/**
 * Files into and out of a container's rootfs (`docker cp`, testcontainers' copies), by a root daemon into a tree
 * a container may be changing at the same time. So no path is ever handed to the kernel whole: each component is
 * looked up in a directory runcd holds open (`/proc/self/fd/N/NAME`, which is openat(2)), opened with O_NOFOLLOW,
 * and symlinks are read and resolved here, inside the container's root, as the container would resolve them. A
 * `..` that climbs out of the root is refused; an absolute link target starts again at the container's root. A
 * container that swaps a directory for a symlink mid-copy makes the copy fail (ELOOP), never leave its rootfs.
 */

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;
const MAX_SYMLINKS = 40;
/** How deep a walk of a container's tree goes before it is refused (a container can nest without end). */
export const MAX_DEPTH = 512;
const READ_CHUNK_BYTES = 64 * 1024;

/** The entry `name` of a directory runcd holds open. */
export const at = (dir: FileHandle, name: string): string => `/proc/self/fd/${dir.fd}/${name}`;
/** A directory opened without following a symlink in its last component, to be walked through `at`. */
export const openDirNoFollow = (path: string): Promise<FileHandle> =>
  open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
const components = (path: string): string[] => path.split('/').filter((part) => part !== '' && part !== '.');

const invalid = (message: string) => new InvalidInputError('container_path_invalid', message);

/** A path resolved inside a root: its parent directory (held open) and its name there. */
export interface ResolvedPath {
  parent: FileHandle;
  /** The entry in `parent`; "." when the path is a directory already held (the root itself, or after `..`). */
  name: string;
  /** undefined: the parent exists, the entry does not. */
  stats: Stats | undefined;
  /** The path inside the container once symlinks are resolved. */
  containerPath: string;
  close(): Promise<void>;
}

/**
 * Resolves `path` inside `root`, following symlinks in it as the container would (the last component only when
 * `followLast`). Throws 404 when a parent is missing, 400 when the path climbs out or passes through a file.
 */
export async function resolveInRoot(root: string, path: string, followLast: boolean): Promise<ResolvedPath> {
  const dirs: FileHandle[] = [await openDirNoFollow(root)];
  const names: string[] = [];
  const close = async () => {
    for (const dir of dirs.splice(0)) await dir.close().catch(() => undefined);
  };
  const shown = (extra: string[] = []) => '/' + [...names, ...extra].join('/');
  try {
    let pending = components(path);
    let links = 0;
    for (;;) {
      const top = dirs[dirs.length - 1]!;
      const name = pending.shift();
      if (name === undefined) {
        return { parent: top, name: '.', stats: await lstat(at(top, '.')), containerPath: shown(), close };
      }
      if (name === '..') {
        if (dirs.length === 1) throw invalid(`"${path}" climbs out of the container's root`);
        await dirs.pop()!.close();
        names.pop();
        continue;
      }
      const stats = await lstat(at(top, name)).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return undefined;
        throw error;
      });
      if (stats === undefined) {
        if (pending.length === 0) return { parent: top, name, stats, containerPath: shown([name]), close };
        throw new NotFoundError('container_path_not_found', `no such file or directory: ${shown([name])}`);
      }
      if (stats.isSymbolicLink() && (pending.length > 0 || followLast)) {
        if (++links > MAX_SYMLINKS) throw invalid(`"${path}": too many levels of symbolic links`);
        const target = await readlink(at(top, name));
        if (target.startsWith('/')) {
          while (dirs.length > 1) await dirs.pop()!.close();
          names.length = 0;
        }
        pending = [...target.split('/').filter((part) => part !== '' && part !== '.'), ...pending];
        continue;
      }
      if (pending.length === 0) return { parent: top, name, stats, containerPath: shown([name]), close };
      if (!stats.isDirectory()) throw invalid(`"${path}": ${shown([name])} is not a directory`);
      if (dirs.length > MAX_DEPTH) throw invalid(`"${path}" is nested too deeply`);
      dirs.push(await openDirNoFollow(at(top, name)));
      names.push(name);
    }
  } catch (error) {
    await close();
    throw fileError(error, path);
  }
}

/** What `docker cp` shows of a path (the X-Docker-Container-Path-Stat header), as Go's os.FileInfo has it. */
export interface PathStat {
  name: string;
  size: number;
  /** Go's os.FileMode: permission bits plus its own type bits (1<<31 directory, 1<<27 symlink, ...). */
  mode: number;
  mtime: string;
  /** For a symlink, where it leads inside the container; otherwise "". */
  linkTarget: string;
}

/** Docker's name for the copied entry: the last component as asked (`/etc/.` is ".", the root is "/"). */
export function copyBaseName(path: string): string {
  if (/\/\.$/.test(path) || path === '.') return '.';
  const parts = components(path);
  return parts.length === 0 ? '/' : parts[parts.length - 1]!;
}

/** Whether Docker follows the last component: a path that ends in "/" or "/." names the directory a link leads to. */
export const followsLast = (path: string): boolean => path.endsWith('/') || /\/\.$/.test(path);

/** `HEAD /containers/ID/archive`: the stat of `path` in `root`. */
export async function statInRoot(root: string, path: string): Promise<PathStat> {
  const resolved = await resolveInRoot(root, path, followsLast(path));
  try {
    const stats = existing(resolved, path);
    let linkTarget = '';
    if (stats.isSymbolicLink()) {
      linkTarget = await resolveInRoot(root, path, true).then(
        async (target) => {
          await target.close();
          return target.containerPath;
        },
        async () => readlink(at(resolved.parent, resolved.name)),
      );
    }
    return {
      name: copyBaseName(path),
      size: stats.size,
      mode: goFileMode(stats),
      mtime: stats.mtime.toISOString(),
      linkTarget,
    };
  } finally {
    await resolved.close();
  }
}

/**
 * `GET /containers/ID/archive`: `path` in `root` as a tar archive (the entry under Docker's base name, a
 * directory with everything below it), produced as the reader takes it. Stopping the iteration (the client went
 * away) closes every descriptor it held.
 */
export async function* packFromRoot(root: string, path: string): AsyncGenerator<Buffer> {
  const resolved = await resolveInRoot(root, path, followsLast(path));
  try {
    const stats = existing(resolved, path);
    const base = copyBaseName(path);
    yield* packEntry(resolved.parent, resolved.name, base === '/' ? '.' : base, stats, new Map(), 0);
    yield END_OF_ARCHIVE;
  } finally {
    await resolved.close();
  }
}

async function* packEntry(
  parent: FileHandle,
  name: string,
  tarName: string,
  stats: Stats,
  seen: Map<string, string>,
  depth: number,
): AsyncGenerator<Buffer> {
  const meta = { mode: stats.mode, uid: stats.uid, gid: stats.gid, mtime: stats.mtime, size: 0 };
  if (stats.isDirectory()) {
    if (depth > MAX_DEPTH) throw invalid(`${tarName} is nested too deeply to copy`);
    const dir = await openDirNoFollow(at(parent, name));
    try {
      yield* headerBlocks({ ...meta, name: `${tarName}/`, type: 'directory' });
      for (const child of (await readdir(at(dir, '.'))).sort()) {
        // An entry removed meanwhile is not copied, as with tar(1).
        const childStats = await lstat(at(dir, child)).catch(() => undefined);
        if (childStats) yield* packEntry(dir, child, `${tarName}/${child}`, childStats, seen, depth + 1);
      }
    } finally {
      await dir.close();
    }
    return;
  }
  if (stats.isSymbolicLink()) {
    yield* headerBlocks({
      ...meta,
      name: tarName,
      type: 'symlink',
      linkname: await readlink(at(parent, name)),
    });
    return;
  }
  if (stats.isFIFO() || stats.isCharacterDevice() || stats.isBlockDevice()) {
    const type: TarHeader['type'] = stats.isFIFO() ? 'fifo' : stats.isCharacterDevice() ? 'char' : 'block';
    const rdev = stats.rdev;
    yield* headerBlocks({
      ...meta,
      name: tarName,
      type,
      devmajor: Math.floor(rdev / 256) & 0xfff,
      devminor: (rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00),
    });
    return;
  }
  if (!stats.isFile()) return; // a socket: tar cannot hold one (tar(1) skips them too)
  if (stats.nlink > 1) {
    const key = `${stats.dev}:${stats.ino}`;
    const first = seen.get(key);
    if (first !== undefined) {
      yield* headerBlocks({ ...meta, name: tarName, type: 'link', linkname: first });
      return;
    }
    seen.set(key, tarName);
  }
  // O_NONBLOCK: a file swapped for a FIFO meanwhile must not hang the copy (fstat then says what it is).
  const file = await open(at(parent, name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  try {
    const current = await file.stat();
    if (!current.isFile()) return;
    const size = current.size;
    yield* headerBlocks({ ...meta, name: tarName, type: 'file', size });
    // The header promised `size` bytes: a file that shrinks meanwhile is padded, one that grows is cut.
    let remaining = size;
    while (remaining > 0) {
      const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, remaining));
      const { bytesRead } = await file.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) {
        yield Buffer.alloc(remaining);
        break;
      }
      yield chunk.subarray(0, bytesRead);
      remaining -= bytesRead;
    }
    yield padding(size);
  } finally {
    await file.close();
  }
}

export interface UnpackOptions {
  /** Bytes of the archive as sent and once decompressed. */
  maxArchiveBytes: number;
  /** Bytes of regular files written. */
  maxBytes: number;
  maxEntries: number;
  /** Docker's noOverwriteDirNonDir: never replace a directory by a file or a file by a directory. */
  noOverwriteDirNonDir: boolean;
  /** Docker's copyUIDGID: every entry owned by the container's user instead of the archive's ids. */
  owner?: { uid: number; gid: number } | undefined;
}

/**
 * `PUT /containers/ID/archive`: extracts a tar (plain or gzip) into the directory `path` of `root`. Each entry's
 * parent is resolved inside the root like any path (so an archive cannot reach outside it by a symlink it wrote
 * itself, nor by `..`); files are created O_EXCL|O_NOFOLLOW after the old entry is unlinked.
 */
export async function unpackIntoRoot(
  root: string,
  path: string,
  body: Readable,
  options: UnpackOptions,
): Promise<void> {
  const destination = await resolveInRoot(root, path, true);
  let base: string;
  try {
    const stats = existing(destination, path);
    if (!stats.isDirectory()) throw invalid(`extraction point "${path}" is not a directory`);
    base = destination.containerPath;
  } finally {
    await destination.close();
  }
  const extract = tarStream.extract();
  let feedError: unknown;
  const feeding = (async () => {
    for await (const chunk of archiveBytes(body, options.maxArchiveBytes)) {
      if (extract.destroyed) return;
      if (!extract.write(chunk)) await Promise.race([once(extract, 'drain'), once(extract, 'close')]);
    }
    extract.end(undefined);
  })().catch((error: unknown) => {
    feedError = error;
    extract.destroy(error as Error);
  });
  const state = { bytes: 0, entries: 0 };
  try {
    for await (const entry of extract) {
      await unpackEntry(root, base, entry.header, entry as unknown as AsyncIterable<Buffer>, options, state);
      entry.resume();
    }
    await feeding;
    if (feedError) throw feedError;
  } catch (error) {
    extract.destroy(new Error('extraction stopped'));
    await feeding;
    throw unpackError(feedError ?? error);
  }
}

async function unpackEntry(
  root: string,
  base: string,
  header: Header,
  content: AsyncIterable<Buffer>,
  options: UnpackOptions,
  state: { bytes: number; entries: number },
): Promise<void> {
  if (++state.entries > options.maxEntries) {
    throw new ContentTooLargeError(
      'container_archive_too_large',
      `the archive has more than ${options.maxEntries} entries`,
    );
  }
  const relative = entryPath(header.name);
  if (relative === '') return; // "./": the extraction point itself
  const target = await resolveInRoot(root, posix.join(base, relative), false);
  try {
    const { parent, name } = target;
    if (name === '.') throw invalid(`archive entry "${header.name}" names a directory that exists already`);
    const path = at(parent, name);
    const uid = options.owner?.uid ?? header.uid ?? 0;
    const gid = options.owner?.gid ?? header.gid ?? 0;
    const mode = (header.mode ?? 0o644) & 0o7777;
    const old = target.stats;
    if (header.type === 'directory') {
      if (old && !old.isDirectory()) {
        if (options.noOverwriteDirNonDir)
          throw invalid(`cannot overwrite non-directory "${header.name}" with a directory`);
        await unlink(path);
      }
      if (!old || !old.isDirectory()) await mkdir(path, { mode: 0o700 });
      const dir = await openDirNoFollow(path);
      try {
        await dir.chown(uid, gid);
        await dir.chmod(mode);
      } finally {
        await dir.close();
      }
      return;
    }
    if (old?.isDirectory()) throw invalid(`cannot overwrite directory "${header.name}" with a non-directory`);
    switch (header.type) {
      case 'file':
      case 'contiguous-file': {
        if (old) await unlink(path);
        const file = await open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
        try {
          for await (const chunk of content) {
            state.bytes += chunk.length;
            if (state.bytes > options.maxBytes) {
              throw new ContentTooLargeError(
                'container_archive_too_large',
                `the archive's files are larger than ${options.maxBytes} bytes (--max-rootfs-bytes)`,
              );
            }
            await file.write(chunk);
          }
          await file.chown(uid, gid);
          await file.chmod(mode);
          if (header.mtime) await file.utimes(header.mtime, header.mtime);
        } finally {
          await file.close();
        }
        return;
      }
      case 'symlink':
        if (old) await unlink(path);
        await symlink(header.linkname ?? '', path);
        await lchown(path, uid, gid);
        return;
      case 'link': {
        const source = await resolveInRoot(root, posix.join(base, entryPath(header.linkname ?? '')), false);
        try {
          const stats = source.stats;
          if (!stats || stats.isDirectory()) {
            throw invalid(
              `hard link "${header.name}" points at "${header.linkname}", which is not a file here`,
            );
          }
          if (old) await unlink(path);
          await link(at(source.parent, source.name), path);
        } finally {
          await source.close();
        }
        return;
      }
      default:
        throw invalid(
          `archive entry "${header.name}" is a ${header.type ?? 'entry'}, which runcd does not copy into containers`,
        );
    }
  } finally {
    await target.close();
  }
}

/** An archive entry's name as a path below the extraction point: absolute or `..` names are refused. */
function entryPath(name: string): string {
  const parts = components(name);
  if (name.startsWith('/') || parts.includes('..')) {
    throw invalid(`archive entry "${name}" is absolute or contains ".."`);
  }
  return parts.join('/');
}

function existing(resolved: ResolvedPath, path: string): Stats {
  if (resolved.stats === undefined) {
    throw new NotFoundError('container_path_not_found', `Could not find the file ${path} in container`);
  }
  return resolved.stats;
}

/** Go's os.FileMode for a stat: Docker's clients read the type from these bits. */
export function goFileMode(stats: Stats): number {
  let mode = stats.mode & 0o777;
  if (stats.mode & 0o4000) mode += 2 ** 23;
  if (stats.mode & 0o2000) mode += 2 ** 22;
  if (stats.mode & 0o1000) mode += 2 ** 20;
  if (stats.isDirectory()) mode += 2 ** 31;
  else if (stats.isSymbolicLink()) mode += 2 ** 27;
  else if (stats.isFIFO()) mode += 2 ** 25;
  else if (stats.isSocket()) mode += 2 ** 24;
  else if (stats.isCharacterDevice()) mode += 2 ** 26 + 2 ** 21;
  else if (stats.isBlockDevice()) mode += 2 ** 26;
  return mode;
}

/** A filesystem refusal caused by the path or the archive is the caller's 400; anything else stays as it is. */
function fileError(error: unknown, path: string): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ELOOP') return invalid(`"${path}" was replaced by a symlink while it was copied`);
  if (code === 'ENOTDIR') return invalid(`"${path}": a component is not a directory`);
  if (code === 'ENAMETOOLONG') return invalid(`"${path}": name too long`);
  return error;
}

function unpackError(error: unknown): unknown {
  const mapped = archiveError(error);
  if (mapped instanceof RootfsQuotaError)
    return new ContentTooLargeError('container_archive_too_large', mapped.message);
  if (mapped instanceof RootfsEntryError) return invalid(mapped.message);
  const code = (mapped as NodeJS.ErrnoException).code;
  if (
    code === 'EEXIST' ||
    code === 'ELOOP' ||
    code === 'ENOTDIR' ||
    code === 'EISDIR' ||
    code === 'ENOTEMPTY'
  ) {
    return invalid(`an archive entry could not be written: ${(mapped as Error).message}`);
  }
  return fileError(mapped, '');
}
