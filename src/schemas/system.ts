import { z } from 'zod';
import { ContainerStatus } from './container.js';

export const Health = z.object({ status: z.literal('ok') }).meta({ id: 'Health', example: { status: 'ok' } });

const ReadinessCheck = z.object({
  ok: z.boolean(),
  detail: z.string().describe('What was checked and what it answered (a version, or the error)'),
});

export const Readiness = z
  .object({
    status: z.enum(['ready', 'not_ready']),
    checkedAt: z.string().describe('When the checks ran (results are reused for 2 seconds)'),
    checks: z.object({
      store: ReadinessCheck.describe('The SQLite store took a synced write'),
      runtime: ReadinessCheck.describe('The OCI runtime answered --version'),
      conmon: ReadinessCheck.describe('conmon answered --version'),
    }),
  })
  .meta({
    id: 'Readiness',
    example: {
      status: 'ready',
      checkedAt: '2026-11-28T10:30:00.000Z',
      checks: {
        store: { ok: true, detail: 'write to /var/lib/runcd/runcd.db succeeded' },
        runtime: { ok: true, detail: 'runc version 1.1.5+ds1' },
        conmon: { ok: true, detail: 'conmon version 2.1.6' },
      },
    },
  });
export type Readiness = z.infer<typeof Readiness>;

export const CgroupVersion = z
  .enum(['v1', 'v2', 'hybrid', 'unknown'])
  .describe('v2: unified hierarchy only; hybrid: v1 controllers with the unified hierarchy beside them');

export const DaemonInfo = z
  .object({
    runcd: z.object({
      version: z.string(),
      node: z.string().describe('Node.js version'),
      pid: z.number().int(),
      startedAt: z.string(),
      uptimeSeconds: z.number().int(),
    }),
    runtime: z.object({
      path: z.string(),
      version: z
        .string()
        .nullable()
        .describe('From `runc --version`, asked now; null when it does not answer'),
      package: z
        .object({ name: z.string(), version: z.string() })
        .nullable()
        .describe('The Debian package the binary belongs to, read at startup'),
      warnings: z.array(z.string()).describe('Security advisories the runtime is not known to be fixed for'),
    }),
    conmon: z.object({ path: z.string(), version: z.string().nullable() }),
    host: z.object({ kernel: z.string(), cgroupVersion: CgroupVersion }),
    containers: z.object({
      total: z.number().int(),
      byStatus: z.record(ContainerStatus, z.number().int()),
    }),
    eventsEmitted: z.number().int().describe('Lifecycle events published since the daemon started'),
    restarts: z.number().int().describe('Restarts performed since the daemon started (by policy or caller)'),
  })
  .meta({
    id: 'DaemonInfo',
    example: {
      runcd: {
        version: '0.1.0',
        node: 'v20.20.2',
        pid: 4242,
        startedAt: '2026-11-28T10:00:00.000Z',
        uptimeSeconds: 1800,
      },
      runtime: {
        path: '/usr/sbin/runc',
        version: '1.1.5+ds1',
        package: { name: 'runc', version: '1.1.5+ds1-1+deb12u1' },
        warnings: [],
      },
      conmon: { path: '/usr/bin/conmon', version: '2.1.6' },
      host: { kernel: '6.1.0-37-amd64', cgroupVersion: 'hybrid' },
      containers: { total: 2, byStatus: { creating: 0, created: 0, running: 1, paused: 0, stopped: 1 } },
      eventsEmitted: 12,
      restarts: 0,
    },
  });
export type DaemonInfo = z.infer<typeof DaemonInfo>;
