import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve, sep } from 'node:path';
import type { CodeOfKind } from '../error-catalog.js';
import { ConflictError, InvalidInputError } from '../errors.js';
import { clampRlimits, hostRlimits } from '../runtime/host-limits.js';
import { DEFAULT_CONSOLE_SIZE, type OciProcess, type OciSpec } from '../runtime/oci.js';
import { entryKind, findExecutable } from '../bundles/rootfs-lookup.js';
import { BundlePolicy } from './bundle-policy.js';
import { findMisspelledFields } from './oci-field-spelling.js';

export interface InspectedBundle {
  path: string;
  rootfs: string;
  /** The config runc will run: the caller's, checked by the policy and completed by it. */
  spec: OciSpec;
  /** `spec` serialized: the exact bytes handed to runc. */
  runtimeConfig: string;
  configDigest: string;
}

/**
 * Checks a caller-supplied bundle before anything is spawned: it must lie inside a configured bundle root
 * (after resolving symlinks, and not reached through one), hold a readable config.json and a rootfs, not ask
 * for what runcd cannot provide, and pass the bundle policy. Errors name the bundle and the problem.
 */
export class BundleInspector {
  private resolvedRoots: string[] | undefined;

  constructor(
    private readonly bundleRoots: readonly string[],
    readonly policy: BundlePolicy = new BundlePolicy(),
    /** For a private bundle runcd made: the other bundle's rootfs its root.path may name (none otherwise). */
    private readonly sharedRootfsOf: (bundleDir: string) => string | undefined = () => undefined,
  ) {}

  /** The policy's rules for a process runcd builds for exec. */
  checkExecProcess(process: OciProcess): void {
    this.policy.checkExecProcess(process);
  }

  /**
   * cwd and args[0] of an exec process, looked up in the container's filesystem as runc will use them, so a
   * caller's mistake is a 400 naming the field instead of runc's words in a 500. They are looked up through the
   * init's root (`/proc/PID/root`), so the container's mounts (a tmpfs /tmp, a bind mount) count, and in the
   * rootfs when there is no init (a created container's init is already inside its root, waiting on the exec
   * fifo). Symlinks are resolved inside that root (rootfs-lookup), never on the host. A courtesy check, not a
   * security boundary: runc still does the real chdir and execve inside the container.
   */
  async checkExecPaths(
    container: { id: string; pid: number; rootfs: string },
    process: OciProcess,
  ): Promise<void> {
    const initRoot = `/proc/${container.pid}/root`;
    const alive = async () =>
      container.pid > 0 && (await stat(initRoot).catch(() => undefined)) !== undefined;
    const root = (await alive()) ? initRoot : container.rootfs;
    try {
      await this.checkExecPathsIn(root, process, container.id);
    } catch (error) {
      // Through /proc/PID/root every path disappears once the init is gone: a container killed during the
      // lookup lost a race, it did not get a wrong cwd or command.
      if (root === initRoot && !(await alive())) {
        throw new ConflictError('container_stopped', 'the container stopped during exec', container.id);
      }
      throw error;
    }
  }

  private async checkExecPathsIn(root: string, process: OciProcess, containerId: string): Promise<void> {
    const cwdKind = await entryKind(root, process.cwd);
    if (cwdKind !== 'directory') {
      throw new InvalidInputError(
        'invalid_cwd',
        `cwd "${process.cwd}" ${cwdKind === 'missing' ? 'does not exist' : 'is not a directory'} in container "${containerId}"`,
        containerId,
      );
    }
    const command = process.args[0]!;
    const lookup = await findExecutable(root, command, process.env, process.cwd);
    if (lookup.found) return;
    if (lookup.problem) {
      const what =
        lookup.problem === 'directory'
          ? 'is a directory'
          : lookup.problem === 'not_executable'
            ? 'has no execute permission'
            : 'is not a regular file';
      throw new InvalidInputError(
        'not_executable',
        `args[0]: "${command}" ${what} in container "${containerId}"`,
        containerId,
      );
    }
    throw new InvalidInputError(
      'executable_not_found',
      command.includes('/')
        ? `args[0]: exec: "${command}": no such file in container "${containerId}" (looked for ${lookup.searched})`
        : `args[0]: exec: "${command}": executable file not found in $PATH (searched PATH=${lookup.searched} in container "${containerId}")`,
      containerId,
    );
  }

  async inspect(bundlePath: string): Promise<InspectedBundle> {
    if (!isAbsolute(bundlePath)) {
      throw invalid('bundle_path_relative', `bundle "${bundlePath}" must be an absolute path`);
    }
    const requested = resolve(bundlePath);
    let real: string;
    try {
      real = await realpath(requested);
    } catch {
      throw invalid('bundle_not_found', `bundle "${bundlePath}" does not exist`);
    }
    const roots = await this.roots();
    if (!roots.some((root) => real === root || real.startsWith(root + sep))) {
      throw invalid(
        'bundle_outside_roots',
        `bundle "${bundlePath}" is outside the bundle roots (${roots.join(', ')}); move it under one of them or start runcd with --bundle-root`,
      );
    }
    if (real !== requested) {
      throw invalid(
        'bundle_through_symlink',
        `bundle "${bundlePath}" is reached through a symlink (${real})`,
      );
    }
    if (roots.includes(real)) {
      throw invalid(
        'bundle_is_root',
        `bundle "${bundlePath}" is a bundle root itself, not a bundle inside it`,
      );
    }
    if (!(await stat(real)).isDirectory()) {
      throw invalid('bundle_not_directory', `bundle "${bundlePath}" is not a directory`);
    }

    const configPath = join(real, 'config.json');
    const configInfo = await lstat(configPath).catch(() => undefined);
    if (!configInfo) throw invalid('bundle_missing_config', `bundle "${bundlePath}" has no config.json`);
    if (!configInfo.isFile()) {
      throw invalid('bundle_invalid_config', `config.json in bundle "${bundlePath}" is not a regular file`);
    }
    if (configInfo.size > MAX_CONFIG_BYTES) {
      throw invalid('bundle_invalid_config', `config.json in bundle "${bundlePath}" is larger than 1 MiB`);
    }
    const bytes = await readConfigBytes(configPath, MAX_CONFIG_BYTES);
    if (bytes === undefined) {
      throw invalid(
        'bundle_invalid_config',
        `config.json in bundle "${bundlePath}" changed while it was read (it must be a regular file of at most 1 MiB)`,
      );
    }
    let spec: OciSpec;
    try {
      spec = JSON.parse(bytes.toString('utf8')) as OciSpec;
    } catch (error) {
      throw invalid(
        'bundle_invalid_config',
        `config.json in bundle "${bundlePath}" is not valid JSON: ${(error as Error).message}`,
      );
    }
    if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
      throw invalid('bundle_invalid_config', `config.json in bundle "${bundlePath}" is not a JSON object`);
    }
    const misspelled = findMisspelledFields(spec);
    if (misspelled.length > 0) {
      const fields = misspelled.map((field) => `${field.path} (runc reads it as "${field.canonical}")`);
      throw invalid(
        'bundle_invalid_config',
        `config.json in bundle "${bundlePath}" spells fields differently from the OCI spec: ${fields.join(', ')}`,
      );
    }
    const process = spec.process;
    if (!process || !Array.isArray(process.args) || process.args.length === 0) {
      throw invalid('bundle_invalid_config', `config.json in bundle "${bundlePath}" has no process.args`);
    }
    const rootPath = spec.root?.path;
    if (typeof rootPath !== 'string' || rootPath === '') {
      throw invalid('bundle_invalid_config', `config.json in bundle "${bundlePath}" has no root.path`);
    }
    const checked = await this.policy.apply(spec, real, bundlePath, {
      sharedRootfs: this.sharedRootfsOf(real),
    });
    // More than the host's hard limit would fail the create with `error setting rlimit type 7`.
    if (checked.spec.process?.rlimits) {
      checked.spec.process.rlimits = clampRlimits(checked.spec.process.rlimits, hostRlimits());
    }
    // A fresh pty is 0x0 (busybox `stty size` fails on it) until someone resizes it: start at the classic 24x80.
    if (checked.spec.process?.terminal === true && !checked.spec.process.consoleSize) {
      checked.spec.process.consoleSize = { ...DEFAULT_CONSOLE_SIZE };
    }
    const rootfs = checked.rootfs;
    const rootfsInfo = await stat(rootfs).catch(() => undefined);
    if (!rootfsInfo?.isDirectory()) {
      throw invalid(
        'bundle_missing_rootfs',
        `rootfs "${rootfs}" of bundle "${bundlePath}" is not a directory`,
      );
    }
    return {
      path: real,
      rootfs,
      spec: checked.spec,
      runtimeConfig: JSON.stringify(checked.spec, null, 2) + '\n',
      configDigest: 'sha256:' + createHash('sha256').update(bytes).digest('hex'),
    };
  }

  private async roots(): Promise<string[]> {
    if (!this.resolvedRoots) {
      this.resolvedRoots = await Promise.all(
        this.bundleRoots.map((root) => realpath(root).catch(() => resolve(root))),
      );
    }
    return this.resolvedRoots;
  }
}

const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * Reads config.json without following a symlink and without reading more than `limit` bytes, so swapping the
 * file for a symlink or a FIFO between the lstat above and this read gets nowhere.
 */
async function readConfigBytes(path: string, limit: number): Promise<Buffer | undefined> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile() || info.size > limit) return undefined;
    // Sized by fstat, plus a byte to notice a file that grew since, and grown only for such a file: a buffer
    // of the whole limit meant zero-filling 1 MiB of fresh pages per create, which cost more than the read.
    let buffer = Buffer.alloc(info.size + 1);
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        if (length > limit) return undefined;
        const grown = Buffer.alloc(Math.min(buffer.length * 2, limit + 1));
        buffer.copy(grown, 0, 0, length);
        buffer = grown;
      }
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > limit) return undefined;
    return buffer.subarray(0, length);
  } finally {
    await handle.close();
  }
}

function invalid(code: CodeOfKind<'invalid_input'>, message: string): InvalidInputError {
  return new InvalidInputError(code, message);
}
