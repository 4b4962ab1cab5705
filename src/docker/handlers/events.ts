import { followEvents } from '../../event-follow.js';
import type { DockerContext, Query } from '../docker-context.js';
import { dockerEventOf } from '../translate/events.js';
import { imageRefOf } from '../translate/images.js';
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
    // A container's labels and image as they were last seen: a destroy event comes after the container is gone.
    const seen = new Map<string, { labels: Record<string, string>; image: string; name: string }>();
    const describe = (id: string) => {
      try {
        const container = containers.get(id);
        const facts = {
          labels: container.labels,
          image: imageRefOf(context.deps.bundles, container.bundle).name,
          name: context.names.nameOf(id),
        };
        seen.set(id, facts);
        return facts;
      } catch {
        return seen.get(id) ?? { labels: {}, image: '', name: id };
      }
    };
    for (const container of containers.list()) describe(container.id);
    const body = followEvents(
      containers.events,
      { since, until },
      (event) => {
        const facts = describe(event.id);
        const docker = dockerEventOf(event, facts.labels, facts.image, facts.name);
        return matchesEventFilters(docker, event.id, filters) ? `${JSON.stringify(docker)}\n` : undefined;
      },
      context.closing,
    );
    // Docker answers the headers at once: the docker CLI (stats without names) waits for them before it lists.
    reply.raw.once('pipe', () => reply.raw.flushHeaders());
    return reply.type('application/json').send(body);
  });
}
