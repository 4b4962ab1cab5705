import { lstat, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { OciSpec } from '../runtime/oci.js';
import type { PolicyCode, ProtectedPaths } from './bundle-policy.js';
import type { BundlePolicyRules } from './policy-rules.js';
import { isInside, isObject, isStringArray, normalizeAbsolute } from './spec-values.js';

/** A structural error in the config (a 400). */
export type Report = (field: string, message: string) => void;
/** A refusal by one policy rule (a 403). */
export type Deny = (code: PolicyCode, field: string, message: string) => void;

/** Filesystems that take no host path: safe to mount anywhere (proc and sysfs only at their own place). */
const DEFAULT_MOUNT_TYPES = ['proc', 'sysfs', 'tmpfs', 'devpts', 'mqueue', 'cgroup', 'cgroup2'];

/** Host trees no bind mount may ever expose, whatever the allowlist says. */
const KERNEL_AND_RUNTIME_TREES = ['/proc', '/sys', '/dev', '/run'];

/** What runcd itself put in a config it generated, and so trusts. */
export interface RuncdProvided {
  /** Host path of the init binary (tini), which may be bind-mounted read-only into any container. */
  initBinary?: string | undefined;
  /** Where runcd keeps named volumes (STATE_DIR/volumes): a volume's NAME/_data may be bind-mounted. */
  volumesDir?: string | undefined;
}

/**
 * The bundle policy's rules about the host's filesystem: where the rootfs may be (inside the bundle, no symlink
 * leading out) and what a mount may bring in (a filesystem type allowed, a bind source inside the bundle or an
 * allowed directory, never a kernel tree, runcd's state or another protected path, never a socket). Paths are
 * resolved as runc will resolve them, and rewritten absolute, because runc reads runcd's copy of config.json.
 */
export class FilesystemChecks {
  private readonly protectedPaths: string[];
  private readonly stateDir: string | undefined;
  private realMountSources: Promise<string[]> | undefined;

  constructor(
    private readonly rules: Readonly<BundlePolicyRules>,
    protectedPaths: ProtectedPaths,
    private readonly provided: RuncdProvided,
  ) {
    this.stateDir = protectedPaths.stateDir ? resolve(protectedPaths.stateDir) : undefined;
    this.protectedPaths = (protectedPaths.others ?? []).map((path) => resolve(path));
  }

  async checkRoot(
    spec: OciSpec,
    bundleDir: string,
    invalid: Report,
    deny: Deny,
    sharedRootfs: string | undefined,
  ): Promise<string> {
    const rootPath: unknown = spec.root?.path;
    if (typeof rootPath !== 'string' || rootPath === '') {
      invalid('root.path', 'is missing');
      return bundleDir;
    }
    if (sharedRootfs !== undefined && rootPath === sharedRootfs) return sharedRootfs;
    const target = resolve(bundleDir, rootPath);
    if (this.rules.allowRootfsOutsideBundle) {
      const real = await realpath(target).catch(() => target);
      spec.root = { ...spec.root, path: real };
      return real;
    }
    if (isAbsolute(rootPath)) {
      deny(
        'policy_root_path',
        'root.path',
        `"${rootPath}" is absolute; it must be a directory inside the bundle`,
      );
      return target;
    }
    if (!isInside(target, bundleDir)) {
      deny('policy_root_path', 'root.path', `"${rootPath}" escapes the bundle`);
      return target;
    }
    let current = bundleDir;
    for (const part of relative(bundleDir, target).split(sep)) {
      current = join(current, part);
      const info = await lstat(current).catch(() => undefined);
      if (!info) break; // a missing rootfs is reported by the inspector
      if (info.isSymbolicLink()) {
        deny('policy_root_path', 'root.path', `"${rootPath}" passes through a symlink (${current})`);
        break;
      }
    }
    spec.root = { ...spec.root, path: target };
    return target;
  }

  async checkMounts(spec: OciSpec, bundleDir: string, invalid: Report, deny: Deny): Promise<void> {
    const mounts: unknown = spec.mounts;
    if (mounts === undefined || mounts === null) return;
    if (!Array.isArray(mounts)) return invalid('mounts', 'must be an array');
    const allowedTypes = new Set([...DEFAULT_MOUNT_TYPES, ...this.rules.allowMountTypes]);
    for (const [index, mount] of mounts.entries()) {
      const field = `mounts[${index}]`;
      if (!isObject(mount)) {
        invalid(field, 'must be an object');
        continue;
      }
      const { destination, type, source, options } = mount;
      if (typeof destination !== 'string' || destination === '') {
        invalid(`${field}.destination`, 'must be a non-empty string');
        continue;
      }
      if (options !== undefined && options !== null && !isStringArray(options)) {
        invalid(`${field}.options`, 'must be an array of strings');
        continue;
      }
      if (type !== undefined && type !== null && typeof type !== 'string') {
        invalid(`${field}.type`, 'must be a string');
        continue;
      }
      const isBind =
        type === 'bind' || (options ?? []).some((option) => option === 'bind' || option === 'rbind');
      if (isBind) {
        if (typeof source !== 'string' || source === '') {
          invalid(`${field}.source`, 'a bind mount needs a source');
          continue;
        }
        if (this.isProvidedInit(source, options ?? [])) continue;
        const checked = await this.checkMountSource(source, bundleDir);
        if ('problem' in checked) {
          if (checked.status === 400) invalid(`${field}.source`, checked.problem);
          else deny('policy_mount_source', `${field}.source`, checked.problem);
          continue;
        }
        // runc reads runcd's copy of config.json from another directory: relative sources must not move.
        mount.source = checked.real;
        continue;
      }
      if (typeof type !== 'string' || type === '') {
        invalid(`${field}.type`, 'is missing, and the mount is not a bind mount');
      } else if (!allowedTypes.has(type)) {
        deny(
          'policy_mount_type',
          `${field}.type`,
          `"${type}" is not an allowed filesystem type (allowed: ${[...allowedTypes].join(', ')}, bind)`,
        );
      } else if (type === 'proc' && normalizeAbsolute(destination) !== '/proc') {
        deny('policy_mount_type', `${field}.destination`, 'a proc filesystem may only be mounted at /proc');
      } else if (type === 'sysfs' && normalizeAbsolute(destination) !== '/sys') {
        deny('policy_mount_type', `${field}.destination`, 'a sysfs filesystem may only be mounted at /sys');
      }
    }
  }

  private async checkMountSource(
    source: string,
    bundleDir: string,
  ): Promise<{ real: string } | { problem: string; status: 400 | 403 }> {
    // runc resolves a relative source against the bundle directory it runs in.
    const hostPath = resolve(bundleDir, source);
    // Judged as written first (so a path that does not exist here is still refused for what it names),
    // then again once symlinks are resolved.
    const named = this.forbiddenMountSource(hostPath, bundleDir);
    if (named) return { problem: `"${source}" ${named}`, status: 403 };
    let real: string;
    try {
      real = await realpath(hostPath);
    } catch {
      return { problem: `"${source}" does not exist on the host`, status: 400 };
    }
    const shown = real === source ? `"${source}"` : `"${source}" (${real})`;
    const resolved = this.forbiddenMountSource(real, bundleDir);
    if (resolved) return { problem: `${shown} ${resolved}`, status: 403 };
    if ((await stat(real).catch(() => undefined))?.isSocket()) {
      return { problem: `${shown} is a socket; sockets are never mounted into containers`, status: 403 };
    }
    if (isInside(real, bundleDir) || this.isVolume(real)) return { real };
    const allowed = await this.allowedMountSources();
    if (allowed.some((dir) => real === dir || isInside(real, dir))) return { real };
    return {
      problem: `${shown} is outside the allowed mount sources; start runcd with --allow-mount-source DIR to allow it`,
      status: 403,
    };
  }

  /** runcd's own init binary, mounted read-only (a writable mount would let one container change another's PID 1). */
  private isProvidedInit(source: string, options: string[]): boolean {
    return (
      this.provided.initBinary !== undefined && source === this.provided.initBinary && options.includes('ro')
    );
  }

  /** Whether `path` is a named volume's data (VOLUMES/NAME/_data or below), which runcd made. */
  private isVolume(path: string): boolean {
    const dir = this.provided.volumesDir;
    if (dir === undefined || !isInside(path, dir)) return false;
    return relative(dir, path).split(sep)[1] === '_data';
  }

  /** Why a host path may never be bind-mounted, whatever the allowlist says; undefined when it may be. */
  private forbiddenMountSource(path: string, bundleDir: string): string | undefined {
    if (path === '/') return "is the host's root directory";
    for (const tree of KERNEL_AND_RUNTIME_TREES) {
      if (path === tree || isInside(path, tree)) return `is under ${tree}`;
    }
    if (this.stateDir) {
      if (path === this.stateDir || isInside(this.stateDir, path)) return "contains runcd's state directory";
      // Bundles may live under the state dir (the default bundle root does); a bundle's own files are fine.
      // So may named volumes, which runcd made there for containers.
      if (isInside(path, this.stateDir) && !isInside(path, bundleDir) && !this.isVolume(path))
        return "is inside runcd's state directory";
    }
    for (const protectedPath of this.protectedPaths) {
      if (path === protectedPath || isInside(protectedPath, path) || isInside(path, protectedPath)) {
        return `overlaps ${protectedPath}, which runcd protects`;
      }
    }
    if (path.endsWith('.sock')) return 'is a socket path; sockets are never mounted into containers';
    return undefined;
  }

  private allowedMountSources(): Promise<string[]> {
    this.realMountSources ??= Promise.all(
      this.rules.allowMountSources.map((dir) => realpath(dir).catch(() => resolve(dir))),
    );
    return this.realMountSources;
  }
}
