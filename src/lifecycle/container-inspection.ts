import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UNLIMITED, type RuntimeStats } from '../runtime/runc.js';
import type { ContainerStats } from '../schemas/container.js';

export interface ContainerProcessInfo {
  pid: number;
  ppid: number;
  uid: number;
  user: string;
  state: string;
  command: string;
}

/** runc's stats in the API's shape; runc's "unlimited" (and 0) is null. */
export function toContainerStats(id: string, stats: RuntimeStats): ContainerStats {
  const limit = (value: number) => (value <= 0 || value >= UNLIMITED ? null : value);
  return {
    id,
    time: new Date().toISOString(),
    cpu: {
      usageNanoseconds: stats.cpu.total,
      userNanoseconds: stats.cpu.user,
      kernelNanoseconds: stats.cpu.kernel,
    },
    memory: {
      usageBytes: stats.memory.usage,
      limitBytes: limit(stats.memory.limit),
      maxUsageBytes: stats.memory.max,
    },
    pids: { current: stats.pids.current, limit: limit(stats.pids.limit) },
  };
}

/** uid → name from the container's own /etc/passwd (absent in a bare busybox rootfs). */
export async function readPasswd(rootfs: string): Promise<Map<number, string>> {
  const users = new Map<number, string>();
  const text = await readFile(join(rootfs, 'etc', 'passwd'), 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [name, , uid] = line.split(':');
    if (name && uid && /^\d+$/.test(uid)) users.set(Number(uid), name);
  }
  if (!users.has(0)) users.set(0, 'root');
  return users;
}
