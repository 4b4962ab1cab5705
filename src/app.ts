import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import containerRoutes from '../routes/containers.js';
import eventRoutes from '../routes/events.js';
import systemRoutes from '../routes/system.js';
import { DomainError, problemFor, toProblem, type Problem } from './errors.js';
import type { ContainerService } from './lifecycle/container-service.js';
import { LogService } from './lifecycle/log-service.js';
import { responseSerializerCompiler } from './response-serializer.js';
import { RUNCD_VERSION } from './version.js';

export interface AppDeps {
  containers: ContainerService;
  logger?: FastifyServerOptions['loggerInstance'];
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

const FASTIFY_ERROR_CODES: Readonly<Record<string, string>> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_content_length',
};

/** Builds the HTTP application without listening, so tests drive it with inject() and main.ts only listens. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    genReqId: () => crypto.randomUUID(),
    requestIdHeader: 'x-request-id',
    bodyLimit: 256 * 1024,
    // `/containers/` and `/containers` are the same resource to a curl user.
    routerOptions: { ignoreTrailingSlash: true },
  }).withTypeProvider<ZodTypeProvider>();

  // Only JSON bodies are accepted; anything else (text/plain included) is a 415 rather than a confusing 400.
  app.removeContentTypeParser('text/plain');
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(responseSerializerCompiler);
  app.setErrorHandler((error, request, reply) => {
    const problem = problemForError(error as FastifyError);
    if (problem.status >= 500) request.log.error({ err: error }, 'request failed');
    return reply.code(problem.status).type(PROBLEM_CONTENT_TYPE).send(problem);
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .type(PROBLEM_CONTENT_TYPE)
      .send(problemFor(404, 'route_not_found', 'Not Found', `no route for ${request.method} ${request.url}`)),
  );
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'runcd',
        version: RUNCD_VERSION,
        description:
          'The OCI container lifecycle (runc create/start/state/list/exec/kill/delete) over HTTP. Errors are RFC 9457 problem+json.',
      },
      tags: [
        { name: 'containers', description: 'Container lifecycle' },
        { name: 'events', description: 'Lifecycle event stream' },
        { name: 'system', description: 'Daemon health and documentation' },
      ],
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  await app.register(systemRoutes);
  await app.register(containerRoutes, { containers: deps.containers, logs: new LogService(deps.containers) });
  await app.register(eventRoutes, { events: deps.containers.events });
  return app;
}

function problemForError(error: FastifyError | Error): Problem {
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
    return problemFor(400, validationCode(context, field), 'Bad Request', detail);
  }
  const fastifyError = error as FastifyError;
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    const code = FASTIFY_ERROR_CODES[fastifyError.code] ?? 'bad_request';
    return problemFor(status, code, httpTitle(status), error.message);
  }
  return problemFor(500, 'internal_error', 'Internal Server Error', 'internal error; see the daemon log');
}

function validationCode(context: string, field: string): string {
  if (context === 'params' && field === 'id') return 'invalid_container_id';
  if (field === 'id' && context === 'body') return 'invalid_container_id';
  if (field === 'signal') return 'invalid_signal';
  return `invalid_${context === 'querystring' ? 'query' : context}`;
}

function httpTitle(status: number): string {
  const titles: Record<number, string> = {
    400: 'Bad Request',
    404: 'Not Found',
    405: 'Method Not Allowed',
    406: 'Not Acceptable',
    413: 'Content Too Large',
    415: 'Unsupported Media Type',
  };
  return titles[status] ?? 'Client Error';
}
