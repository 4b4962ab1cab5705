import type { ContainerService } from '../lifecycle/container-service.js';
import type { Conmon } from '../runtime/conmon.js';
import type { Runc } from '../runtime/runc.js';
import type { DaemonInfo, Readiness } from '../schemas/system.js';
import type { RuntimeSecurityReport } from '../security/runtime-advisories.js';
import type { ReadinessRepository } from '../store/readiness-repository.js';
import { RUNCD_VERSION } from '../version.js';
import { readHostFacts } from './host-facts.js';
import { countByStatus, type DaemonMetrics } from './metrics.js';

export interface SystemStatusDeps {
  readinessStore: ReadinessRepository;
  /** Shown in the store check's detail. */
  databasePath: string;
  runc: Runc;
  conmon: Conmon;
  containers: ContainerService;
  metrics: DaemonMetrics;
  runtimeSecurity: RuntimeSecurityReport;
  /** How long one round of readiness checks is reused (default 2 s). */
  readinessCacheMs?: number;
}

type Check = Readiness['checks']['store'];

const DEFAULT_READINESS_CACHE_MS = 2_000;

/**
 * What GET /readyz and GET /info answer. Readiness checks spawn the runtime and conmon (through their adapters),
 * so one round is shared by concurrent probes and reused for a couple of seconds: an unauthenticated probe
 * endpoint must not become a way to make runcd fork at the caller's pace.
 */
export class SystemStatus {
  private readonly startedAt = new Date();
  private lastReadiness: { at: number; result: Readiness } | undefined;
  private pendingReadiness: Promise<Readiness> | undefined;

  constructor(private readonly deps: SystemStatusDeps) {}

  async readiness(): Promise<Readiness> {
    const cacheMs = this.deps.readinessCacheMs ?? DEFAULT_READINESS_CACHE_MS;
    if (this.lastReadiness && Date.now() - this.lastReadiness.at < cacheMs) return this.lastReadiness.result;
    this.pendingReadiness ??= this.checkReadiness().finally(() => {
      this.pendingReadiness = undefined;
    });
    return this.pendingReadiness;
  }

  async info(): Promise<DaemonInfo> {
    const [runtimeVersion, conmonVersion, host, totals] = await Promise.all([
      this.deps.runc.version().catch(() => ''),
      this.deps.conmon.version().catch(() => ''),
      readHostFacts(),
      this.deps.metrics.totals(),
    ]);
    const byStatus = countByStatus(this.deps.containers);
    const report = this.deps.runtimeSecurity;
    return {
      runcd: {
        version: RUNCD_VERSION,
        node: process.version,
        pid: process.pid,
        startedAt: this.startedAt.toISOString(),
        uptimeSeconds: Math.floor((Date.now() - this.startedAt.getTime()) / 1000),
      },
      runtime: {
        path: this.deps.runc.binary,
        version: versionNumber(runtimeVersion),
        package: report.package,
        warnings: report.warnings,
      },
      conmon: { path: this.deps.conmon.binary, version: versionNumber(conmonVersion) },
      host,
      containers: { total: Object.values(byStatus).reduce((sum, count) => sum + count, 0), byStatus },
      eventsEmitted: totals.eventsEmitted,
      restarts: totals.restarts,
    };
  }

  private async checkReadiness(): Promise<Readiness> {
    const checkedAt = new Date().toISOString();
    const store = ((): Check => {
      try {
        this.deps.readinessStore.recordProbe(checkedAt);
        return { ok: true, detail: `write to ${this.deps.databasePath} succeeded` };
      } catch (error) {
        return { ok: false, detail: `cannot write ${this.deps.databasePath}: ${(error as Error).message}` };
      }
    })();
    const [runtime, conmon] = await Promise.all([
      answers(this.deps.runc.binary, () => this.deps.runc.version({ fresh: true })),
      answers(this.deps.conmon.binary, () => this.deps.conmon.version()),
    ]);
    const result: Readiness = {
      status: store.ok && runtime.ok && conmon.ok ? 'ready' : 'not_ready',
      checkedAt,
      checks: { store, runtime, conmon },
    };
    this.lastReadiness = { at: Date.now(), result };
    return result;
  }
}

async function answers(binary: string, version: () => Promise<string>): Promise<Check> {
  try {
    const line = await version();
    return /version/i.test(line)
      ? { ok: true, detail: line }
      : { ok: false, detail: `${binary} --version printed no version${line ? `: ${line}` : ''}` };
  } catch (error) {
    return { ok: false, detail: (error as Error).message };
  }
}

/** "runc version 1.1.5+ds1" → "1.1.5+ds1"; null when the program did not answer. */
function versionNumber(line: string): string | null {
  if (!line) return null;
  return /version\s+(\S+)/.exec(line)?.[1] ?? line;
}
