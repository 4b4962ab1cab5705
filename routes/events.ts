import { PassThrough } from 'node:stream';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { EventBus } from '../src/lifecycle/event-bus.js';
import { ProblemSchema } from '../src/schemas/common.js';
import { ContainerEvent, EventsQuery } from '../src/schemas/events.js';
import { abortOnClose, asStreamedBody, wantsEventStream } from './streaming.js';

export interface EventRoutesOptions {
  events: EventBus;
}

const eventRoutes: FastifyPluginAsyncZod<EventRoutesOptions> = async (app, { events }) => {
  app.get(
    '/events',
    {
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
      const body = new PassThrough();
      const matches = (event: ContainerEvent) =>
        (!ids || ids.has(event.id)) && (!types || types.has(event.type)) && (!until || event.time <= until);
      const write = (event: ContainerEvent) => {
        const json = JSON.stringify(event);
        body.write(sse ? `id: ${event.seq}\nevent: ${event.type}\ndata: ${json}\n\n` : `${json}\n`);
      };

      // Subscribe before reading history, then skip live events the replay already covered.
      let lastSeq = 0;
      const queued: ContainerEvent[] = [];
      let replaying = true;
      const unsubscribe = events.subscribe((event) => {
        if (replaying) queued.push(event);
        else if (event.seq > lastSeq && matches(event)) {
          lastSeq = event.seq;
          write(event);
        }
      });
      const finish = () => {
        unsubscribe();
        clearTimeout(untilTimer);
        body.end();
      };
      let untilTimer: NodeJS.Timeout | undefined;
      if (since !== undefined) {
        for (const event of events.history({ since, until })) {
          lastSeq = event.seq;
          if (matches(event)) write(event);
        }
      }
      for (const event of queued) {
        if (event.seq > lastSeq && matches(event)) {
          lastSeq = event.seq;
          write(event);
        }
      }
      replaying = false;
      if (until !== undefined) {
        const remaining = Date.parse(until) - Date.now();
        if (remaining <= 0) finish();
        else {
          // setTimeout takes at most 2^31-1 ms (24.8 days) and fires at once above that: a far `until` re-arms.
          const arm = () => {
            const left = Date.parse(until) - Date.now();
            if (left <= 0) finish();
            else untilTimer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
          };
          arm();
        }
      }
      abortOnClose(reply).signal.addEventListener('abort', finish, { once: true });
      return reply
        .type(sse ? 'text/event-stream' : 'application/x-ndjson')
        .header('cache-control', 'no-cache')
        .send(asStreamedBody(reply, body));
    },
  );
};

const MAX_TIMER_MS = 2 ** 31 - 1;

function toSet<T>(value: T | T[] | undefined): Set<T> | undefined {
  if (value === undefined) return undefined;
  return new Set(Array.isArray(value) ? value : [value]);
}

export default eventRoutes;
