import type { FastifyPluginCallback, FastifyRequest } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import type { DaemonMetrics } from './metrics.js';
import { runInRequest } from './request-context.js';

/**
 * Per request: the request id enters the request context (so lifecycle and audit lines carry it), one
 * `request completed` line with route, status and duration is logged, and the duration is observed by route and
 * status. Registered before every other plugin, so its hooks run first.
 */

export interface HttpObservabilityOptions {
  /** Absent where no metrics are kept (the OpenAPI generator). */
  metrics?: DaemonMetrics | undefined;
  /**
   * Which API the listener serves, for a listener other than runcd's own (`docker`): its log lines say so and its
   * routes get their own metric series, since Docker's `/containers/:id/start` is not runcd's.
   */
  api?: string | undefined;
}

/** A well-formed caller-chosen request id is kept; anything else (too long, odd characters) gets a new one. */
const ACCEPTABLE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export function requestIdFor(header: string | string[] | undefined): string {
  return typeof header === 'string' && ACCEPTABLE_REQUEST_ID.test(header) ? header : crypto.randomUUID();
}

const httpObservability: FastifyPluginCallback<HttpObservabilityOptions> = (app, { metrics, api }, done) => {
  const enter = (request: FastifyRequest, next: () => void) => runInRequest({ requestId: request.id }, next);

  // Callback style on purpose: `next` runs the rest of the phase synchronously inside the request context. The
  // context is entered again in later phases because reading the body resumes from socket events, outside it.
  app.addHook('onRequest', (request, reply, next) => {
    const started = performance.now();
    metrics?.requestStarted();
    // 'finish' when the response was sent; 'close' alone when the client went away first.
    let observed = false;
    const observe = (completed: boolean) => {
      if (observed) return;
      observed = true;
      const durationMs = performance.now() - started;
      const route = request.routeOptions.url;
      metrics?.requestFinished(
        request.method,
        route !== undefined && api !== undefined ? `${api} ${route}` : route,
        reply.statusCode,
        durationMs / 1000,
      );
      request.log.info(
        {
          ...(api !== undefined ? { api } : {}),
          method: request.method,
          route: route ?? null,
          // As the client sent it (the Docker listener drops the /v1.NN prefix before routing).
          url: request.originalUrl.slice(0, 2048),
          status: reply.statusCode,
          durationMs: Math.round(durationMs * 10) / 10,
          ...(completed ? {} : { aborted: true }),
        },
        completed ? 'request completed' : 'request aborted by the client',
      );
    };
    reply.raw.once('finish', () => observe(true));
    reply.raw.once('close', () => observe(reply.raw.writableFinished));
    enter(request, next);
  });
  app.addHook('preValidation', (request, _reply, next) => enter(request, next));
  app.addHook('preHandler', (request, _reply, next) => enter(request, next));
  app.addHook('onResponse', (request, _reply, next) => enter(request, next));
  done();
};

export default fastifyPlugin(httpObservability, { name: 'runcd-http-observability', fastify: '5.x' });
