import { constants, type Stats } from 'node:fs';
import { lstat, open, opendir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { RootfsWriter } from './rootfs-writer.js';

/**
 * Copies a directory tree (already checked to be inside an import root) into a RootfsWriter. The source is
 * walked with lstat and never followed: symlinks are copied as symlinks, files are opened O_NOFOLLOW, and files
 * with several links are copied once and hard-linked after, as `cp -a` does.
 */
export async function importTree(source: string, writer: RootfsWriter): Promise<void> {
  const seenInodes = new Map<string, string>();
  const walk = async (dir: string, relative: string): Promise<void> => {
    const entries: string[] = [];
    for await (const entry of await opendir(dir)) entries.push(entry.name);
    entries.sort();
    for (const name of entries) {
      const hostPath = join(dir, name);
      const entryName = relative ? `${relative}/${name}` : name;
      const info = await lstat(hostPath);
      const meta = metaOf(info);
      if (info.isDirectory()) {
        await writer.directory(entryName, meta);
        await walk(hostPath, entryName);
      } else if (info.isSymbolicLink()) {
        await writer.symlink(entryName, await readlink(hostPath), meta);
      } else if (info.isFile()) {
        const inode = `${info.dev}:${info.ino}`;
        const first = info.nlink > 1 ? seenInodes.get(inode) : undefined;
        if (first !== undefined) {
          await writer.hardlink(entryName, first);
          continue;
        }
        if (info.nlink > 1) seenInodes.set(inode, entryName);
        const handle = await open(hostPath, constants.O_RDONLY | constants.O_NOFOLLOW);
        try {
          await writer.file(entryName, meta, handle.createReadStream({ autoClose: false }));
        } finally {
          await handle.close();
        }
      } else {
        writer.refuse(entryName, kindOf(info));
      }
    }
  };
  await walk(source, '');
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
