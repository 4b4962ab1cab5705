import { DEFAULT_CONSOLE_SIZE, type OciSpec } from '../runtime/oci.js';
import { clampRlimits, type HostRlimits } from '../runtime/host-limits.js';
import type { ResourceUpdate } from '../runtime/runc.js';
import type { BundleSpec, ResourceLimits } from '../schemas/bundle.js';

/**
 * Turns a caller's BundleSpec into a config.json: the runtime's own default (`runc spec`, parsed) with the
 * caller's fields set on the object. Never string-edits JSON; what is not asked for stays runc's default
 * (namespaces, masked paths, capabilities, a read-only root, RLIMIT_NOFILE 1024).
 */

/** Where the init (tini) appears in the container: /dev is runc's tmpfs, so nothing is created in the rootfs. */
export const INIT_PATH_IN_CONTAINER = '/dev/init';
/** The CFS period `cpus` is measured against (Docker's too). */
export const CPU_PERIOD_MICROS = 100_000;

export interface GenerateOptions {
  /** Default hostname. */
  bundleId: string;
  /** `rootfs` (inside the bundle) or the absolute path of a shared rootfs. */
  rootPath: string;
  /** Host path of the init binary; required when the spec asks for `init`. */
  initBinary?: string | undefined;
  hostLimits: HostRlimits;
}

export function generateConfig(defaults: OciSpec, request: BundleSpec, options: GenerateOptions): OciSpec {
  const spec = structuredClone(defaults);
  const base = spec.process ?? { user: { uid: 0, gid: 0 }, args: [], cwd: '/' };
  const wanted = request.process;

  const env = new Map<string, string>();
  for (const entry of [...(base.env ?? []), ...(wanted.env ?? [])]) {
    const eq = entry.indexOf('=');
    env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  const rlimits = new Map((base.rlimits ?? []).map((rlimit) => [rlimit.type, rlimit]));
  for (const rlimit of wanted.rlimits ?? []) rlimits.set(rlimit.type, rlimit);

  spec.process = {
    ...base,
    terminal: wanted.terminal === true,
    ...(wanted.terminal === true ? { consoleSize: { ...DEFAULT_CONSOLE_SIZE } } : {}),
    args: request.init ? [INIT_PATH_IN_CONTAINER, '--', ...wanted.args] : [...wanted.args],
    env: [...env].map(([key, value]) => `${key}=${value}`),
    cwd: wanted.cwd ?? base.cwd ?? '/',
    user: wanted.user ? parseUser(wanted.user) : base.user,
    rlimits: clampRlimits([...rlimits.values()], options.hostLimits),
  };
  spec.root = {
    ...spec.root,
    path: options.rootPath,
    readonly: request.readonlyRootfs ?? spec.root?.readonly ?? true,
  };
  spec.hostname = request.hostname ?? options.bundleId;

  const mounts = [...(spec.mounts ?? [])];
  for (const mount of request.mounts ?? []) {
    const type = mount.type ?? 'bind';
    const options = [...(mount.options ?? (type === 'bind' ? ['rbind', 'nosuid', 'nodev'] : []))];
    if (type === 'bind' && !options.includes('bind') && !options.includes('rbind')) options.unshift('rbind');
    if (mount.readonly && !options.includes('ro')) options.push('ro');
    mounts.push({
      destination: mount.destination,
      type,
      ...(mount.source !== undefined ? { source: mount.source } : {}),
      options,
    });
  }
  if (request.init) {
    if (!options.initBinary) throw new Error('init requested without an init binary');
    mounts.push({
      destination: INIT_PATH_IN_CONTAINER,
      type: 'bind',
      source: options.initBinary,
      options: ['bind', 'ro', 'nosuid', 'nodev'],
    });
  }
  spec.mounts = mounts;

  if (request.resources) {
    const linux = (spec.linux ??= {});
    const current = (linux.resources ?? {}) as Record<string, unknown>;
    linux.resources = { ...current, ...linuxResources(request.resources) };
  }
  return spec;
}

export function parseUser(user: string): { uid: number; gid: number } {
  const [uid, gid] = user.split(':').map(Number);
  return { uid: uid!, gid: gid ?? uid! };
}

/** The OCI `linux.resources` fields for the limits given. */
export function linuxResources(limits: ResourceLimits): Record<string, unknown> {
  const resources: Record<string, unknown> = {};
  if (limits.memoryBytes !== undefined) resources.memory = { limit: limits.memoryBytes };
  if (limits.cpus !== undefined) {
    resources.cpu = { quota: cpuQuota(limits.cpus), period: CPU_PERIOD_MICROS };
  }
  if (limits.pidsLimit !== undefined) resources.pids = { limit: limits.pidsLimit };
  return resources;
}

/** The same limits as `runc update` flags. */
export function resourceUpdate(limits: ResourceLimits): ResourceUpdate {
  return {
    memoryBytes: limits.memoryBytes,
    ...(limits.cpus !== undefined
      ? { cpuQuotaMicros: cpuQuota(limits.cpus), cpuPeriodMicros: CPU_PERIOD_MICROS }
      : {}),
    pidsLimit: limits.pidsLimit,
  };
}

/** Merges new limits into a config's `linux.resources` (for runcd's copy after `runc update`). */
export function mergeResources(spec: OciSpec, limits: ResourceLimits): OciSpec {
  const linux = (spec.linux ??= {});
  const current = (linux.resources ?? {}) as Record<string, Record<string, unknown> | undefined>;
  const update = linuxResources(limits) as Record<string, Record<string, unknown>>;
  const merged: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(update)) merged[key] = { ...current[key], ...value };
  linux.resources = merged;
  return spec;
}

function cpuQuota(cpus: number): number {
  return Math.max(1000, Math.round(cpus * CPU_PERIOD_MICROS));
}
