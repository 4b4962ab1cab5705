import type { Stats } from 'node:fs';
import { lstat, readdir, type FileHandle } from 'node:fs/promises';
import { at, MAX_DEPTH, openDirNoFollow } from './container-files.js';

/**
 * `docker diff`: what a container changed in its writable layer, read from the layer's overlayfs upper
 * directory next to the image's rootfs (its lowerdir), as Docker's overlay2 driver does:
 *
 * - a character device 0:0 in upper is overlayfs's whiteout, a file or directory deleted from the image: D;
 * - anything else in upper that the image also has at that path is a change of it: C (a directory that holds a
 *   change is copied up, so it shows as C, as under Docker);
 * - the rest was added by the container: A, and so is everything below an added directory.
 *
 * The container can change its upper directory while this runs, so the walk never follows a symlink there: each
 * directory is opened with O_NOFOLLOW through the one runcd holds (`/proc/self/fd/N/NAME`, openat(2)), as
 * container-files.ts does. The image's side is walked the same way, in step: a lower directory is looked into
 * only when the upper one lies over a directory there, which is what overlayfs merges.
 *
 * Not seen: an opaque directory (one removed and made again) shows as C with its new entries as C or A; the
 * image's entries it hides are not listed as D (that needs the trusted.overlay.opaque xattr, which Node cannot
 * read without a native module).
 */

/** Docker's ChangeType: 0 modified, 1 added, 2 deleted. */
export type ChangeKind = 0 | 1 | 2;

export interface LayerChange {
  Path: string;
  Kind: ChangeKind;
}

const isWhiteout = (stats: Stats): boolean => stats.isCharacterDevice() && stats.rdev === 0;

/** The changes of the layer whose upper directory is `upper` over the image rootfs `lower`, sorted by path. */
export async function* layerChanges(upper: string, lower: string): AsyncGenerator<LayerChange> {
  const upperRoot = await openDirNoFollow(upper);
  const lowerRoot = await openDirNoFollow(lower).catch(() => undefined);
  try {
    yield* walk(upperRoot, lowerRoot, '', 0);
  } finally {
    await upperRoot.close();
    await lowerRoot?.close();
  }
}

async function* walk(
  upperDir: FileHandle,
  lowerDir: FileHandle | undefined,
  prefix: string,
  depth: number,
): AsyncGenerator<LayerChange> {
  if (depth > MAX_DEPTH) throw new Error(`the writable layer is nested too deeply at ${prefix}`);
  for (const name of (await readdir(at(upperDir, '.'))).sort()) {
    const path = `${prefix}/${name}`;
    // An entry the container removed meanwhile is not reported, as it no longer is a change.
    const stats = await lstat(at(upperDir, name)).catch(() => undefined);
    if (!stats) continue;
    if (isWhiteout(stats)) {
      yield { Path: path, Kind: 2 };
      continue;
    }
    const below = lowerDir && (await lstat(at(lowerDir, name)).catch(() => undefined));
    yield { Path: path, Kind: below ? 0 : 1 };
    if (!stats.isDirectory()) continue;
    const childUpper = await openDirNoFollow(at(upperDir, name)).catch(() => undefined);
    if (!childUpper) continue; // swapped for something else meanwhile
    const childLower =
      lowerDir && below?.isDirectory()
        ? await openDirNoFollow(at(lowerDir, name)).catch(() => undefined)
        : undefined;
    try {
      yield* walk(childUpper, childLower, path, depth + 1);
    } finally {
      await childUpper.close();
      await childLower?.close();
    }
  }
}
