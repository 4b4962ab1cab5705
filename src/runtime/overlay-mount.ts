import { readFile } from 'node:fs/promises';
import type { ProcessRunner } from './process-runner.js';

/**
 * mount(8) and umount(8) for the one kind of mount runcd makes itself: an overlayfs over a shared, read-only
 * image rootfs, so a container writes to its own layer. One method per command, argv built here; both run
 * through the ProcessRunner (clean environment, no shell, a deadline, counted like the runc calls).
 *
 * The mount is made in runcd's own mount namespace, so it outlives a runcd that is killed: the next start finds
 * it in /proc/self/mountinfo and either keeps it (its container still exists) or takes it down.
 */

export interface OverlayLayout {
  /** The shared image rootfs, never written. */
  lower: string;
  /** The container's own changes. */
  upper: string;
  /** overlayfs's scratch directory, on the same filesystem as `upper`. */
  work: string;
  /** Where the merged tree appears (the bundle's rootfs). */
  target: string;
}

/** mount or umount refused; `toolMessage` is the tool's own words. */
export class MountError extends Error {
  override name = 'MountError';
  constructor(
    readonly target: string,
    readonly toolMessage: string,
  ) {
    super(`${target}: ${toolMessage}`);
  }
}

const TIMEOUT_MS = 30_000;
/**
 * overlayfs splits its options at ',' and lowerdir at ':'; a path with either (or a backslash, its escape) would
 * be read as something else, so such a path is refused rather than escaped.
 */
const OPTION_UNSAFE = /[,:\\\n]/;

export class OverlayMounts {
  constructor(
    private readonly runner: ProcessRunner,
    private readonly binaries: { mount?: string; umount?: string } = {},
  ) {}

  /** `mount -t overlay`: nodev, since a device node written in a layer must never open a host device. */
  async mount(layout: OverlayLayout): Promise<void> {
    for (const path of [layout.lower, layout.upper, layout.work, layout.target]) {
      if (OPTION_UNSAFE.test(path)) {
        throw new MountError(layout.target, `"${path}" contains a character overlayfs options cannot carry`);
      }
    }
    await this.run(this.binaries.mount ?? 'mount', layout.target, [
      '-t',
      'overlay',
      '-o',
      `nodev,lowerdir=${layout.lower},upperdir=${layout.upper},workdir=${layout.work}`,
      'overlay',
      layout.target,
    ]);
  }

  /**
   * `umount TARGET`, or, when something still holds it (a shell whose cwd is inside it), `umount --lazy`: the
   * tree is detached at once and freed when the last user lets go, so the directories under it can be removed.
   */
  async unmount(target: string): Promise<void> {
    try {
      await this.run(this.binaries.umount ?? 'umount', target, [target]);
    } catch (error) {
      if (!(error instanceof MountError) || !/busy/i.test(error.toolMessage)) throw error;
      await this.run(this.binaries.umount ?? 'umount', target, ['--lazy', target]);
    }
  }

  /** Whether `target` is a mount point in runcd's mount namespace now. */
  async isMounted(target: string): Promise<boolean> {
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
    return mountPointsOf(mountinfo).includes(target);
  }

  private async run(binary: string, target: string, argv: string[]): Promise<void> {
    let result;
    try {
      result = await this.runner.run(binary, argv, { timeoutMs: TIMEOUT_MS });
    } catch (error) {
      throw new MountError(target, (error as Error).message);
    }
    if (result.timedOut) throw new MountError(target, `${binary} did not finish within ${TIMEOUT_MS} ms`);
    if (result.exitCode !== 0) {
      throw new MountError(target, result.stderr.trim() || `${binary} exited with ${result.exitCode}`);
    }
  }
}

/** The mount points of a mountinfo text (field 5), with the kernel's octal escapes (`\040` for a space) undone. */
export function mountPointsOf(mountinfo: string): string[] {
  const points: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    points.push(
      field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))),
    );
  }
  return points;
}
