import { lstat, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { OverlayMounts } from '../runtime/overlay-mount.js';

/**
 * A container's own writable layer over a shared, read-only image rootfs: what `docker run` gives every
 * container that is not `--read-only`. A private bundle (spec + rootfsFrom with readonlyRootfs: false) has
 *
 *     BUNDLE/layer/upper   the container's changes (overlayfs upperdir)
 *     BUNDLE/layer/work    overlayfs's workdir
 *     BUNDLE/rootfs        the merged tree runc runs on (config.json's root.path "rootfs")
 *
 * The image's directory is only ever overlayfs's lowerdir: no container writes to it, and no container sees
 * another's changes. The layer is mounted before the container is created and taken down with its bundle; the
 * presence of BUNDLE/layer is what says a bundle has one, so a restarted runcd knows what to remount or remove
 * from the disk alone.
 */
export class WritableLayers {
  constructor(private readonly mounts: OverlayMounts) {}

  /** Whether the private bundle in `dir` has a layer (made by `create`, and not yet removed). */
  async has(dir: string): Promise<boolean> {
    return (await lstat(join(dir, 'layer')).catch(() => undefined))?.isDirectory() === true;
  }

  /** Makes the layer's directories and mounts it; the bundle's config.json must say root.path "rootfs". */
  async create(dir: string, lowerRootfs: string): Promise<void> {
    await mkdir(join(dir, 'layer'), { mode: 0o700 });
    await mkdir(join(dir, 'layer', 'upper'), { mode: 0o755 });
    await mkdir(join(dir, 'layer', 'work'), { mode: 0o700 });
    await mkdir(join(dir, 'rootfs'), { mode: 0o755 });
    await this.ensureMounted(dir, lowerRootfs);
  }

  /** Mounts the layer unless it is mounted already (after a runcd restart it usually still is; after a reboot not). */
  async ensureMounted(dir: string, lowerRootfs: string): Promise<void> {
    const target = join(dir, 'rootfs');
    if (await this.mounts.isMounted(target)) return;
    await this.mounts.mount({
      lower: lowerRootfs,
      upper: join(dir, 'layer', 'upper'),
      work: join(dir, 'layer', 'work'),
      target,
    });
  }

  /**
   * Takes the merged tree down so the bundle directory can be removed; throws while it is still mounted, so the
   * caller never recurses through a live mount.
   */
  async unmount(dir: string): Promise<void> {
    const target = join(dir, 'rootfs');
    // A stacked mount (mounted twice by a race with another runcd) needs one umount per layer of it.
    for (let attempt = 0; attempt < 4 && (await this.mounts.isMounted(target)); attempt++) {
      await this.mounts.unmount(target);
    }
    if (await this.mounts.isMounted(target)) {
      throw new Error(`the writable layer at ${target} is still mounted`);
    }
  }

  /** The container's changes (overlayfs's upperdir): what `docker diff` reads. */
  upperOf(dir: string): string {
    return join(dir, 'layer', 'upper');
  }

  /** The merged rootfs a layered bundle runs on. */
  rootfsOf(dir: string): string {
    return join(dir, 'rootfs');
  }
}
