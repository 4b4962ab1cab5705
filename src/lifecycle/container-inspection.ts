import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readProcess } from '../runtime/procfs.js';
import { UNLIMITED, type RuntimeStats } from '../runtime/runc.js';
import type { ContainerStats } from '../schemas/container.js';
import type { ContainerRuntime } from './container-instances.js';
import { assertAllowed } from './container-states.js';
import type { ContainerView } from './container-view.js';
import type { ContainerWaiters } from './container-waiters.js';
import { translateRuntimeError } from './runtime-error-translation.js';

export interface ContainerProcessInfo {
  pid: number;
  ppid: number;
  uid: number;
  user: string;
  state: string;
  command: string;
}

/** What runs in a container and what it uses (runc ps, runc events --stats): reads that change nothing. */
export class ContainerInspection {
  constructor(
    private readonly runc: Pick<ContainerRuntime, 'ps' | 'stats' | 'streamStats'>,
    private readonly view: ContainerView,
    private readonly waiters: ContainerWaiters,
  ) {}

  async processes(id: string): Promise<ContainerProcessInfo[]> {
    const record = this.view.require(id);
    assertAllowed('processes', record);
    let pids: number[];
    try {
      pids = await this.runc.ps(id);
    } catch (error) {
      throw translateRuntimeError(error, id, 'ps');
    }
    const users = await readPasswd(record.rootfs);
    const details = await Promise.all(pids.map((pid) => readProcess(pid)));
    return details
      .filter((detail) => detail !== undefined)
      .map((detail) => ({ ...detail, user: users.get(detail.uid) ?? String(detail.uid) }));
  }

  async stats(id: string): Promise<ContainerStats> {
    assertAllowed('stats', this.view.require(id));
    try {
      return toContainerStats(id, await this.runc.stats(id));
    } catch (error) {
      throw translateRuntimeError(error, id, 'stats');
    }
  }

  /** Streams snapshots until the container stops or `signal` aborts. */
  async streamStats(
    id: string,
    intervalSeconds: number,
    onStats: (stats: ContainerStats) => void,
    signal: AbortSignal,
  ): Promise<void> {
    assertAllowed('stats', this.view.require(id));
    const stream = await this.runc.streamStats(id, intervalSeconds, (stats) =>
      onStats(toContainerStats(id, stats)),
    );
    const stopped = this.waiters.register(id, 'stopped');
    const aborted = new Promise<void>((resolve) =>
      signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    try {
      await Promise.race([stream.done, stopped.promise, aborted]);
    } finally {
      stream.stop();
      stopped.cancel();
    }
  }
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
