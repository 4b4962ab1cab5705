import { followEvents } from '../../event-follow.js';
import type { DockerContext, Query } from '../docker-context.js';
import { dockerEventOf } from '../translate/events.js';
import { parseFilters, matchesEventFilters, timeParam } from '../translate/params.js';
import type { FastifyInstance } from 'fastify';

/** GET /events: the EventBus in Docker's shape and filters, replayed from the store and followed. */
export function registerEventRoutes(app: FastifyInstance, context: DockerContext): void {
  const { containers } = context;
  app.get('/events', { config: { access: 'read' } }, async (request, reply) => {
    const query = request.query as Query;
    const since = timeParam(query.since, 'since');
    const until = timeParam(query.until, 'until');
    const filters = parseFilters(query.filters);
    const labelsById = new Map(containers.list().map((container) => [container.id, container.labels]));
    const labelsOf = (id: string) => {
      try {
        const labels = containers.get(id).labels;
        labelsById.set(id, labels);
        return labels;
      } catch {
        return labelsById.get(id) ?? {};
      }
    };
    const body = followEvents(
      containers.events,
      { since, until },
      (event) => {
        const docker = dockerEventOf(event, labelsOf(event.id));
        return matchesEventFilters(docker, event.id, filters) ? `${JSON.stringify(docker)}\n` : undefined;
      },
      context.closing,
    );
    return reply.type('application/json').send(body);
  });
}
