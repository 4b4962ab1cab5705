import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';

const Health = z.object({ status: z.literal('ok') }).meta({ id: 'Health' });

const systemRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/healthz',
    {
      schema: {
        operationId: 'health',
        tags: ['system'],
        summary: 'The daemon process is up and answering',
        response: { 200: Health },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
};

export default systemRoutes;
