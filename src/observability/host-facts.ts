import { readFile } from 'node:fs/promises';
import { release } from 'node:os';
import type { z } from 'zod';
import type { CgroupVersion } from '../schemas/system.js';

export interface HostFacts {
  kernel: string;
  cgroupVersion: z.infer<typeof CgroupVersion>;
}

export async function readHostFacts(): Promise<HostFacts> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  return { kernel: release(), cgroupVersion: cgroupVersionOf(mountinfo) };
}

/**
 * From the mounts under /sys/fs/cgroup, as runc itself decides: cgroup2 mounted there is the unified (v2)
 * hierarchy; v1 controllers there with a cgroup2 mount beside them (systemd's /sys/fs/cgroup/unified) is hybrid,
 * where runc still manages the v1 controllers.
 */
export function cgroupVersionOf(mountinfo: string): HostFacts['cgroupVersion'] {
  let unifiedRoot = false;
  let unifiedBeside = false;
  let v1 = false;
  for (const line of mountinfo.split('\n')) {
    // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS"
    const [before, after] = line.split(' - ');
    const mountPoint = before?.split(' ')[4];
    const fsType = after?.split(' ')[0];
    if (!mountPoint || !fsType) continue;
    if (fsType === 'cgroup2' && mountPoint === '/sys/fs/cgroup') unifiedRoot = true;
    else if (fsType === 'cgroup2' && mountPoint.startsWith('/sys/fs/cgroup/')) unifiedBeside = true;
    else if (fsType === 'cgroup' && mountPoint.startsWith('/sys/fs/cgroup/')) v1 = true;
  }
  if (unifiedRoot) return 'v2';
  if (v1) return unifiedBeside ? 'hybrid' : 'v1';
  return 'unknown';
}
