import { UpdateResourcesBody, type ResourceLimits } from '../../schemas/bundle.js';
import { DockerError, notImplemented } from '../docker-errors.js';
import { positive } from './container-create.js';

/** The parts of Docker's `POST /containers/{id}/update` body runcd reads (docker update sends them all, zero = unset). */
export interface DockerUpdateBody {
  Memory?: unknown;
  MemorySwap?: unknown;
  NanoCpus?: unknown;
  CpuQuota?: unknown;
  CpuPeriod?: unknown;
  PidsLimit?: unknown;
  RestartPolicy?: { Name?: unknown };
  [field: string]: unknown;
}

/** Fields runcd has no limit for, with the docker CLI flag that sets each, so a refusal names what the user typed. */
const UNSUPPORTED: Record<string, string> = {
  CpuShares: '--cpu-shares',
  CpuRealtimePeriod: '--cpu-rt-period',
  CpuRealtimeRuntime: '--cpu-rt-runtime',
  CpusetCpus: '--cpuset-cpus',
  CpusetMems: '--cpuset-mems',
  MemoryReservation: '--memory-reservation',
  KernelMemory: '--kernel-memory',
  BlkioWeight: '--blkio-weight',
};

const DEFAULT_CPU_PERIOD = 100_000;

/**
 * `docker update` as runcd's resource change (PATCH /containers/ID/resources): memory, CPUs and the pids limit.
 * The CLI sends every field, unset ones as 0 or "": those are ignored; a set field runcd cannot apply is refused
 * with its flag's name, never dropped.
 */
export function resourceLimitsOf(body: DockerUpdateBody): ResourceLimits {
  for (const [field, flag] of Object.entries(UNSUPPORTED)) {
    const value = body[field];
    if ((typeof value === 'number' && value !== 0) || (typeof value === 'string' && value !== '')) {
      throw notImplemented(`docker update ${flag}`, 'runcd changes memory, CPUs and the pids limit only');
    }
  }
  if (typeof body.RestartPolicy?.Name === 'string' && body.RestartPolicy.Name !== '') {
    throw notImplemented(
      'docker update --restart',
      "a runcd container's restart policy is set when it is created",
    );
  }
  if (positive(body.MemorySwap) !== undefined) {
    throw notImplemented('docker update --memory-swap', 'runcd sets no swap limit of its own');
  }
  if (body.PidsLimit === -1) {
    throw notImplemented('removing the pids limit (--pids-limit -1)', 'give a new limit instead');
  }
  const memory = positive(body.Memory);
  const nanoCpus = positive(body.NanoCpus);
  const quota = positive(body.CpuQuota);
  if (nanoCpus !== undefined && quota !== undefined) {
    throw new DockerError(400, 'conflicting options: --cpus and --cpu-quota cannot both be given');
  }
  const cpus =
    nanoCpus !== undefined
      ? nanoCpus / 1e9
      : quota !== undefined
        ? quota / (positive(body.CpuPeriod) ?? DEFAULT_CPU_PERIOD)
        : undefined;
  const pids = positive(body.PidsLimit);
  const limits = {
    ...(memory !== undefined ? { memoryBytes: memory } : {}),
    ...(cpus !== undefined ? { cpus } : {}),
    ...(pids !== undefined ? { pidsLimit: pids } : {}),
  };
  const parsed = UpdateResourcesBody.safeParse(limits);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.');
    throw new DockerError(
      400,
      `invalid resources for docker update: ${field ? `${field}: ` : ''}${issue?.message ?? 'invalid'}` +
        (Object.keys(limits).length === 0 ? ' (--memory, --cpus, --cpu-quota or --pids-limit)' : ''),
    );
  }
  return parsed.data;
}
