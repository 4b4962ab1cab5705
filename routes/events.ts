import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { EventBus } from '../src/lifecycle/event-bus.js';
import { ProblemSchema } from '../src/schemas/common.js';
import { ContainerEvent, EventsQuery } from '../src/schemas/events.js';
import { followEvents } from '../src/event-follow.js';
import { abortOnClose, asStreamedBody, wantsEventStream } from './streaming.js';

export interface EventRoutesOptions {
  events: EventBus;
}

const eventRoutes: FastifyPluginAsyncZod<EventRoutesOptions> = async (app, { events }) => {
  app.get(
    '/events',
    {
      config: { access: 'read' },
      schema: {
        operationId: 'streamEvents',
        tags: ['events'],
        summary:
          'Lifecycle events as NDJSON (text/event-stream with Accept: text/event-stream): stored events from `since`, then live ones until `until` or until the client disconnects',
        querystring: EventsQuery,
        response: {
          200: {
            description:
              'One ContainerEvent per line, or per server-sent event with Accept: text/event-stream',
            content: {
              'application/x-ndjson': { schema: ContainerEvent },
              'text/event-stream': {
                schema: z
                  .string()
                  .describe('Messages of `id: SEQ`, `event: TYPE` and `data: ` a ContainerEvent as JSON'),
              },
            },
          },
          400: ProblemSchema,
        },
      },
    },
    async (request, reply) => {
      const { since, until } = request.query;
      const ids = toSet(request.query.id);
      const types = toSet(request.query.type);
      const sse = wantsEventStream(request.headers.accept);
      const matches = (event: ContainerEvent) =>
        (!ids || ids.has(event.id)) && (!types || types.has(event.type));
      const body = followEvents(
        events,
        { since, until },
        (event) => {
          if (!matches(event)) return undefined;
          const json = JSON.stringify(event);
          return sse ? `id: ${event.seq}\nevent: ${event.type}\ndata: ${json}\n\n` : `${json}\n`;
        },
        abortOnClose(reply).signal,
        (error) => request.log.warn({ err: error }, 'event stream ended early'),
      );
      return reply
        .type(sse ? 'text/event-stream' : 'application/x-ndjson')
        .header('cache-control', 'no-cache')
        .send(asStreamedBody(reply, body));
    },
  );
};

function toSet<T>(value: T | T[] | undefined): Set<T> | undefined {
  if (value === undefined) return undefined;
  return new Set(Array.isArray(value) ? value : [value]);
}

export default eventRoutes;
