import type { ContainerStats } from '../../schemas/container.js';
import { dockerIdOf } from '../docker-ids.js';
import { ZERO_TIME } from './container-shapes.js';

/** One sample: runcd's stats of the container, and the host's CPU time when they were read. */
export interface StatsSample {
  stats: ContainerStats;
  systemCpuNanoseconds: number;
}

function cpuOf(sample: StatsSample | undefined, onlineCpus: number): Record<string, unknown> {
  return {
    cpu_usage: {
      total_usage: sample?.stats.cpu.usageNanoseconds ?? 0,
      usage_in_kernelmode: sample?.stats.cpu.kernelNanoseconds ?? 0,
      usage_in_usermode: sample?.stats.cpu.userNanoseconds ?? 0,
    },
    system_cpu_usage: sample?.systemCpuNanoseconds ?? 0,
    online_cpus: onlineCpus,
    throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 },
  };
}

/**
 * Docker's stats shape: the CLI's CPU % is the container's CPU time over the host's between `precpu_stats`
 * and `cpu_stats`, so both come from samples taken an interval apart. An unlimited memory reads as the host's
 * memory, as Docker reports it. No sample (a stopped container) is Docker's all-zero answer.
 */
export function dockerStatsOf(
  id: string,
  current: StatsSample | undefined,
  previous: StatsSample | undefined,
  host: { onlineCpus: number; memoryBytes: number },
  name = id,
): Record<string, unknown> {
  return {
    name: `/${name}`,
    id: dockerIdOf(id),
    read: current?.stats.time ?? ZERO_TIME,
    preread: previous?.stats.time ?? ZERO_TIME,
    pids_stats: current
      ? {
          current: current.stats.pids.current,
          ...(current.stats.pids.limit ? { limit: current.stats.pids.limit } : {}),
        }
      : {},
    blkio_stats: { io_service_bytes_recursive: null, io_serviced_recursive: null },
    num_procs: 0,
    storage_stats: {},
    cpu_stats: cpuOf(current, host.onlineCpus),
    precpu_stats: cpuOf(previous, host.onlineCpus),
    memory_stats: current
      ? {
          usage: current.stats.memory.usageBytes,
          max_usage: current.stats.memory.maxUsageBytes,
          limit: current.stats.memory.limitBytes ?? host.memoryBytes,
          stats: {},
        }
      : {},
  };
}
