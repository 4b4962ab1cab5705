import { readFileSync } from 'node:fs';
import type { OciRlimit } from './oci.js';

/**
 * The resource limits of runcd's own process, which the runtime inherits. runc sets a container's rlimits with
 * prlimit from outside; asking for more than this hard limit fails the whole create with
 * `error setting rlimit type 7: operation not permitted` (7 is RLIMIT_NOFILE), so configs are clamped to it.
 */

/** `/proc/self/limits` row names → the OCI names of the same limits. */
const LIMIT_NAMES: Readonly<Record<string, string>> = {
  'Max cpu time': 'RLIMIT_CPU',
  'Max file size': 'RLIMIT_FSIZE',
  'Max data size': 'RLIMIT_DATA',
  'Max stack size': 'RLIMIT_STACK',
  'Max core file size': 'RLIMIT_CORE',
  'Max resident set': 'RLIMIT_RSS',
  'Max processes': 'RLIMIT_NPROC',
  'Max open files': 'RLIMIT_NOFILE',
  'Max locked memory': 'RLIMIT_MEMLOCK',
  'Max address space': 'RLIMIT_AS',
  'Max file locks': 'RLIMIT_LOCKS',
  'Max pending signals': 'RLIMIT_SIGPENDING',
  'Max msgqueue size': 'RLIMIT_MSGQUEUE',
  'Max nice priority': 'RLIMIT_NICE',
  'Max realtime priority': 'RLIMIT_RTPRIO',
  'Max realtime timeout': 'RLIMIT_RTTIME',
};

export const RLIMIT_TYPES: readonly string[] = Object.values(LIMIT_NAMES);

/** Hard limit per OCI rlimit type; a type absent from the map is unlimited. */
export type HostRlimits = ReadonlyMap<string, number>;

export function parseProcLimits(text: string): HostRlimits {
  const hard = new Map<string, number>();
  for (const line of text.split('\n')) {
    const name = Object.keys(LIMIT_NAMES).find((prefix) => line.startsWith(prefix + ' '));
    if (!name) continue;
    // Columns: name, soft, hard, units; the name has spaces, the values do not.
    const values = line.slice(name.length).trim().split(/\s+/);
    const value = values[1];
    if (value !== undefined && /^\d+$/.test(value)) hard.set(LIMIT_NAMES[name]!, Number(value));
  }
  return hard;
}

let cached: HostRlimits | undefined;

export function hostRlimits(): HostRlimits {
  cached ??= parseProcLimits(readFileSync('/proc/self/limits', 'utf8'));
  return cached;
}

/** Each rlimit lowered to what the host allows (hard) and soft never above hard; the others unchanged. */
export function clampRlimits(rlimits: readonly OciRlimit[], host: HostRlimits): OciRlimit[] {
  return rlimits.map((rlimit) => {
    const ceiling = host.get(rlimit.type);
    const hard = ceiling === undefined ? rlimit.hard : Math.min(rlimit.hard, ceiling);
    return { ...rlimit, hard, soft: Math.min(rlimit.soft, hard) };
  });
}
