import { constants, type Stats } from 'node:fs';
import { lstat, open, readdir, readlink, realpath, type FileHandle } from 'node:fs/promises';
import { sep } from 'node:path';
import { RootfsEntryError, type RootfsWriter } from './rootfs-writer.js';

/**
 * Copies a directory tree from an import root into a RootfsWriter without ever following a symlink in it, even
 * if someone swaps a directory for a symlink while the copy runs: every directory is opened O_NOFOLLOW and its
 * entries are reached through that descriptor (`/proc/self/fd/N/NAME`, the equivalent of openat), so a path is
 * never resolved twice. Symlinks are copied as symlinks; files are opened O_NOFOLLOW|O_NONBLOCK (a FIFO swapped
 * in cannot block) and must still be regular files; files with several links are copied once and hard-linked
 * after, as `cp -a` does.
 */
export async function importTree(source: string, importRoot: string, writer: RootfsWriter): Promise<void> {
  const top = await openDirectory(source);
  try {
    // Checked on the open descriptor, so a component swapped after the caller's check is caught here.
    const opened = await realpath(fdPath(top));
    if (opened !== importRoot && !opened.startsWith(importRoot + sep)) {
      throw new RootfsEntryError(
        'rootfs_outside_import_roots',
        `rootfs.path "${source}" left the import root`,
      );
    }
    await copyDirectory(top, '', writer, new Map());
  } finally {
    await top.close();
  }
}

async function copyDirectory(
  dir: FileHandle,
  relative: string,
  writer: RootfsWriter,
  seenInodes: Map<string, string>,
): Promise<void> {
  const base = fdPath(dir);
  for (const name of (await readdir(base)).sort()) {
    const hostPath = `${base}/${name}`;
    const entryName = relative ? `${relative}/${name}` : name;
    const info = await lstat(hostPath);
    const meta = metaOf(info);
    if (info.isDirectory()) {
      await writer.directory(entryName, meta);
      const child = await openDirectory(hostPath);
      try {
        await copyDirectory(child, entryName, writer, seenInodes);
      } finally {
        await child.close();
      }
    } else if (info.isSymbolicLink()) {
      await writer.symlink(entryName, await readlink(hostPath), meta);
    } else if (info.isFile()) {
      const inode = `${info.dev}:${info.ino}`;
      const first = info.nlink > 1 ? seenInodes.get(inode) : undefined;
      if (first !== undefined) {
        await writer.hardlink(entryName, first);
        continue;
      }
      const handle = await open(hostPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      try {
        if (!(await handle.stat()).isFile())
          writer.refuse(entryName, 'file that changed type during the copy');
        await writer.file(entryName, meta, handle.createReadStream({ autoClose: false }));
      } finally {
        await handle.close();
      }
      if (info.nlink > 1) seenInodes.set(inode, entryName);
    } else {
      writer.refuse(entryName, kindOf(info));
    }
  }
}

function openDirectory(path: string): Promise<FileHandle> {
  return open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
}

function fdPath(handle: FileHandle): string {
  return `/proc/self/fd/${handle.fd}`;
}

function metaOf(info: Stats) {
  return { mode: info.mode, uid: info.uid, gid: info.gid, mtime: info.mtime };
}

function kindOf(info: Stats): string {
  if (info.isCharacterDevice()) return 'character-device';
  if (info.isBlockDevice()) return 'block-device';
  if (info.isFIFO()) return 'fifo';
  if (info.isSocket()) return 'socket';
  return 'unknown entry';
}
