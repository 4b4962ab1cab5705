import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { DaemonMetrics } from '../src/observability/metrics.js';
import type { SystemStatus } from '../src/observability/system-status.js';
import { DaemonInfo, Health, Readiness } from '../src/schemas/system.js';

export interface SystemRoutesOptions {
  status: SystemStatus;
  metrics: DaemonMetrics;
}

const systemRoutes: FastifyPluginAsyncZod<SystemRoutesOptions> = async (app, { status, metrics }) => {
  app.get(
    '/healthz',
    {
      config: { access: 'public' },
      schema: {
        operationId: 'health',
        tags: ['system'],
        summary: 'The daemon process is up and answering (liveness)',
        response: { 200: Health },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { access: 'public' },
      schema: {
        operationId: 'readiness',
        tags: ['system'],
        summary:
          'Ready to serve: the store takes a write, and the runtime and conmon answer --version (503 with the same body, naming the failed check, when not)',
        response: { 200: Readiness, 503: Readiness },
      },
    },
    async (_request, reply) => {
      const readiness = await status.readiness();
      return reply.code(readiness.status === 'ready' ? 200 : 503).send(readiness);
    },
  );

  app.get(
    '/info',
    {
      config: { access: 'read' },
      schema: {
        operationId: 'info',
        tags: ['system'],
        summary:
          'Versions of runcd, the runtime, conmon and the kernel; cgroup version; container and event counts',
        response: { 200: DaemonInfo },
      },
    },
    async () => status.info(),
  );

  app.get(
    '/metrics',
    {
      config: { access: 'read' },
      schema: {
        operationId: 'metrics',
        tags: ['system'],
        summary:
          'Prometheus metrics (text format): request durations by route and status, runtime invocations by command and outcome, containers by status, events, restarts',
        produces: ['text/plain'],
        response: { 200: z.string().describe('Prometheus text exposition format 0.0.4') },
      },
    },
    async (_request, reply) => {
      const rendered = await metrics.render();
      return reply.type(rendered.contentType).send(rendered.body);
    },
  );

  app.get('/openapi.json', { config: { access: 'public' }, schema: { hide: true } }, async () =>
    app.swagger(),
  );
};

export default systemRoutes;
