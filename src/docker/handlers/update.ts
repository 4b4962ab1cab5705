import type { FastifyInstance } from 'fastify';
import type { DockerContext } from '../docker-context.js';
import { notImplemented } from '../docker-errors.js';
import { resolveContainer } from '../docker-ids.js';
import { idParam } from '../translate/params.js';
import { resourceLimitsOf, type DockerUpdateBody } from '../translate/resource-update.js';

/**
 * `docker update`: runcd's resource change (runc update on the live container, kept in its config for restarts).
 * A stopped container answers 409 as the native route does: its limits are applied by runc to a running one.
 */
export function registerUpdateRoute(app: FastifyInstance, context: DockerContext): void {
  const { deps } = context;
  app.post('/containers/:id/update', { config: { access: 'admin' } }, async (request) => {
    const id = resolveContainer(context, idParam(request));
    if (!deps.resources)
      throw notImplemented('docker update', 'this runcd has no resource updates configured');
    const limits = resourceLimitsOf((request.body ?? {}) as DockerUpdateBody);
    await deps.resources.update(id, limits);
    return { Warnings: [] };
  });
}
