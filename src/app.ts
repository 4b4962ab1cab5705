import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, {
  LogController,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifySchema,
  type FastifyServerOptions,
  type RouteOptions,
} from 'fastify';
import { isErrorCode, type ErrorCode } from './error-catalog.js';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import bundleRoutes from '../routes/bundles.js';
import containerResourceRoutes from '../routes/container-resources.js';
import containerRoutes from '../routes/containers.js';
import eventRoutes from '../routes/events.js';
import attachSessionRoutes from '../routes/attach-session.js';
import execSessionRoutes from '../routes/exec-session.js';
import fastifyWebsocket from '@fastify/websocket';
import type { ContainerAttach } from './lifecycle/container-attach.js';
import type { ExecSessions } from './lifecycle/exec-sessions.js';
import imageRoutes, { type ImageRoutesOptions } from '../routes/images.js';
import networkRoutes from '../routes/networks.js';
import systemRoutes from '../routes/system.js';
import type { Socket } from 'node:net';
import { z } from 'zod';
import { attachExamples } from './docs/openapi-examples.js';
import {
  DomainError,
  PROBLEM_CONTENT_TYPE,
  problemFor,
  problemHeaders,
  toProblem,
  type Problem,
} from './errors.js';
import type { BundleService } from './bundles/bundle-service.js';
import type { ContainerCreation } from './creation/container-creation.js';
import type { ContainerResourceService } from './lifecycle/container-resources.js';
import type { ContainerService } from './lifecycle/container-service.js';
import type { NetworkService } from './network/network-service.js';
import { LogService } from './lifecycle/log-service.js';
import httpObservability, { requestIdFor } from './observability/http-observability.js';
import type { DaemonMetrics } from './observability/metrics.js';
import type { SystemStatus } from './observability/system-status.js';
import { responseSerializerCompiler } from './response-serializer.js';
import { RouteMethods } from './route-methods.js';
import { DEFAULT_BODY_LIMIT } from './security/limits.js';
import securityPlugin, { type SecurityOptions } from './security/security-plugin.js';
import { RUNCD_VERSION } from './version.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Aborted once the server starts closing: long-lived responses end so shutdown can finish. */
    closing: AbortSignal;
  }
}

export interface AppDeps {
  containers: ContainerService;
  bundles: BundleService;
  /** POST /containers, in all three body forms. */
  creation: ContainerCreation;
  resources: ContainerResourceService;
  /** Interactive exec over WebSocket. */
  sessions: ExecSessions;
  /** Attaching to containers' own processes over WebSocket. */
  attach: ContainerAttach;
  networks: NetworkService;
  /** Registries (pull, push); without them, the image routes answer 501. */
  images?: ImageRoutesOptions['images'];
  security: SecurityOptions;
  /** Behind GET /readyz, /info and /metrics; one of each per daemon, shared by its listeners. */
  system: { status: SystemStatus; metrics: DaemonMetrics };
  logger?: FastifyServerOptions['loggerInstance'];
  /** TLS for a TCP listener (`https.createServer` options). */
  https?: {
    cert: Buffer;
    key: Buffer;
    ca?: Buffer | undefined;
    requestCert: boolean;
    rejectUnauthorized: boolean;
  };
}

export { PROBLEM_CONTENT_TYPE };

const FASTIFY_ERROR_CODES: Readonly<Record<string, ErrorCode>> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_content_length',
  FST_ERR_BAD_URL: 'invalid_url',
  FST_ERR_MAX_PARAM_LENGTH: 'invalid_url',
};

/** Builds the HTTP application without listening, so tests drive it with inject() and main.ts only listens. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    ...(deps.https ? { https: deps.https } : {}),
    // A caller's X-Request-Id is kept when it is a sane token (it ends up in every log line), else replaced.
    requestIdHeader: false,
    genReqId: (request) => requestIdFor(request.headers['x-request-id']),
    // http-observability logs one line per request, with the route and duration fastify's own lines lack.
    logController: new LogController({ disableRequestLogging: true }),
    // Larger limits for the few routes that need them come from the security plugin's table.
    bodyLimit: DEFAULT_BODY_LIMIT,
    // `/containers/` and `/containers` are the same resource to a curl user. Long parameters reach the schema,
    // which says what is wrong with them, instead of the router's terse refusal.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 2048 },
    // Errors the router raises before any route is chosen (a bad %-escape): problem+json like the rest.
    frameworkErrors: (error, _request, reply: FastifyReply) => {
      const problem = problemForError(error, DEFAULT_BODY_LIMIT);
      void reply.code(problem.status).type(PROBLEM_CONTENT_TYPE).send(problem);
    },
    // Even a request that is not HTTP at all gets a problem+json answer, never fastify's own format.
    clientErrorHandler: answerMalformedRequest,
  }).withTypeProvider<ZodTypeProvider>();

  // Only JSON bodies are accepted; anything else (text/plain included) is a 415 rather than a confusing 400.
  app.removeContentTypeParser('text/plain');
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(responseSerializerCompiler);
  const routeMethods = new RouteMethods();
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routeMethods.add(method, route.url);
    refuseUnknownQueryParameters(route);
  });
  const answerUnrouted = (request: FastifyRequest, reply: FastifyReply) => {
    const known = routeMethods.find(request.url);
    if (known) {
      return reply
        .code(405)
        .header('allow', known.methods.join(', '))
        .type(PROBLEM_CONTENT_TYPE)
        .send(
          problemFor(
            'method_not_allowed',
            `${request.method} is not defined for ${known.url}; it answers ${known.methods.join(', ')}`,
          ),
        );
    }
    return reply
      .code(404)
      .type(PROBLEM_CONTENT_TYPE)
      .send(problemFor('route_not_found', `no route for ${request.method} ${request.url}`));
  };
  app.setNotFoundHandler(answerUnrouted);
  app.setErrorHandler((error, request, reply) => {
    // A body no route will read (QUERY without a Content-Type on a path without QUERY) is not the problem: the
    // method or the path is, as for any other request that matches no route.
    if (
      request.routeOptions.url === undefined &&
      /^FST_ERR_(CTP_|ROUTE_MISSING_CONTENT)/.test((error as FastifyError).code ?? '')
    ) {
      return answerUnrouted(request, reply);
    }
    const problem = problemForError(error as FastifyError, request.routeOptions.bodyLimit);
    if (problem.status >= 500) request.log.error({ err: error }, 'request failed');
    if (error instanceof DomainError) reply.headers(problemHeaders(error));
    return reply.code(problem.status).type(PROBLEM_CONTENT_TYPE).send(problem);
  });
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

  // Long-lived responses (log follows, event and stats streams, waits) end when the server starts closing, so a
  // graceful shutdown is never held open by a client that would stay forever.
  const closing = new AbortController();
  app.decorate('closing', closing.signal);
  app.addHook('preClose', async () => closing.abort());

  // First, so the request context and timing cover every other hook (the security plugin's audit included).
  await app.register(httpObservability, { metrics: deps.system.metrics });
  // Before every route, so its route hooks (body limits) and request hooks cover them all.
  await app.register(securityPlugin, { ...deps.security, routeMethods });
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'runcd',
        version: RUNCD_VERSION,
        description:
          'The OCI container lifecycle (runc create/start/state/list/exec/kill/delete) over HTTP. Errors are RFC 9457 problem+json. Query parameters an operation does not list are refused (400 invalid_query), except on the system operations; a method a path does not list is a 405 with Allow.',
      },
      components: {
        securitySchemes: {
          bearerAuth: {
            type: 'http',
            scheme: 'bearer',
            description:
              'A token from `runcd token create --scope read|operate|admin`. Required on TCP; on the unix socket only with --require-token.',
          },
        },
      },
      tags: [
        { name: 'containers', description: 'Container lifecycle' },
        { name: 'bundles', description: 'Bundles runcd generates and owns (config.json + rootfs)' },
        {
          name: 'images',
          description: 'Images from and to registries (skopeo, umoci), kept as managed bundles',
        },
        {
          name: 'networks',
          description: 'CNI bridge networks containers attach to between create and start',
        },
        { name: 'events', description: 'Lifecycle event stream' },
        { name: 'system', description: 'Daemon health and documentation' },
      ],
    },
    transform: jsonSchemaTransform,
    transformObject: (input) => attachExamples(jsonSchemaTransformObject(input)),
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  await app.register(systemRoutes, deps.system);
  await app.register(containerRoutes, {
    containers: deps.containers,
    logs: new LogService(deps.containers),
    creation: deps.creation,
  });
  await app.register(containerResourceRoutes, { resources: deps.resources });
  // Frames up to 1 MiB (a paste into a terminal); output frames are conmon's packets, at most 8 KiB each.
  await app.register(fastifyWebsocket, { options: { maxPayload: 1024 * 1024 } });
  await app.register(execSessionRoutes, { sessions: deps.sessions });
  await app.register(attachSessionRoutes, { attach: deps.attach });
  await app.register(bundleRoutes, { bundles: deps.bundles });
  await app.register(imageRoutes, { images: deps.images });
  await app.register(networkRoutes, { networks: deps.networks });
  await app.register(eventRoutes, { events: deps.containers.events });
  return app;
}

/**
 * Every documented route refuses query parameters it does not define (400 invalid_query naming them), so a
 * misspelt `?forse=true` or `?sigal=KILL` is an error instead of a silently different request. The system routes
 * are spared: probes and scrapers are configured elsewhere and may add a cache-buster. The Docker API socket is
 * a separate app and ignores unknown parameters, as Docker does (its clients send parameters runcd never reads).
 */
function refuseUnknownQueryParameters(route: RouteOptions): void {
  const schema = route.schema as (FastifySchema & { hide?: boolean; tags?: string[] }) | undefined;
  if (!schema || schema.hide || schema.tags?.includes('system')) return;
  const query = schema.querystring ?? z.object({});
  if (query instanceof z.ZodObject) schema.querystring = query.strict();
}

function problemForError(error: FastifyError | Error, bodyLimit: number): Problem {
  if (error instanceof DomainError) return toProblem(error);
  if (hasZodFastifySchemaValidationErrors(error)) {
    const first = error.validation[0];
    const context = (error as { validationContext?: string }).validationContext ?? 'request';
    const field = first?.instancePath.replace(/^\//, '').replace(/\//g, '.') ?? '';
    const detail = error.validation
      .map((issue) => {
        const path = issue.instancePath.replace(/^\//, '').replace(/\//g, '.');
        return `${context}${path ? `.${path}` : ''}: ${issue.message}`;
      })
      .join('; ');
    return problemFor(validationCode(context, field), detail);
  }
  const fastifyError = error as FastifyError;
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    const code = FASTIFY_ERROR_CODES[fastifyError.code] ?? 'bad_request';
    const detail =
      code === 'body_too_large'
        ? `request body is larger than ${bodyLimit} bytes, the limit of this route`
        : code === 'unsupported_media_type'
          ? 'request bodies must be JSON (Content-Type: application/json), or a tarball for PUT /bundles/ID/rootfs'
          : error.message;
    return problemFor(code, detail, status);
  }
  return problemFor('internal_error', 'internal error; see the daemon log');
}

function answerMalformedRequest(error: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable) return;
  const problem = problemFor(
    'malformed_request',
    `the request is not valid HTTP (${error.code ?? error.message})`,
    error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400,
  );
  const { status, title } = problem;
  const body = JSON.stringify(problem);
  socket.end(
    `HTTP/1.1 ${status} ${title}\r\ncontent-type: ${PROBLEM_CONTENT_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

function validationCode(context: string, field: string): ErrorCode {
  if (context === 'params' && field === 'id') return 'invalid_container_id';
  if (field === 'id' && context === 'body') return 'invalid_container_id';
  if (field === 'signal') return 'invalid_signal';
  // Only the network routes have a `name` parameter or top-level body field.
  if (field === 'name' && (context === 'params' || context === 'body')) return 'invalid_network_name';
  const code = `invalid_${context === 'querystring' ? 'query' : context}`;
  return isErrorCode(code) ? code : 'bad_request';
}
