import type { TLSSocket } from 'node:tls';
import type { FastifyPluginAsync, FastifyRequest, FastifySchema, RouteOptions } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { InsufficientScopeError, PolicyDeniedError, RateLimitedError, UnauthorizedError } from '../errors.js';
import { OperationContext, runInOperation } from '../runtime/operation-context.js';
import { ProblemSchema } from '../schemas/common.js';
import type { TokenScope } from '../store/token-repository.js';
import { outcomeFor, type AuditLog } from './audit-log.js';
import type { RateLimiter } from './rate-limiter.js';
import type { RouteMethods } from '../route-methods.js';
import { assertRoutesDeclareAccess, RouteAccessTable, type RouteAccess } from './route-access.js';
import { scopeAllows } from './scopes.js';
import { bearerSecret, type TokenAuthenticator } from './tokens.js';

/**
 * Every request passes here before any handler: Origin refusal on TCP, authentication, authorization from the
 * the access each route declares (route-access.ts), the per-token rate limit; then the handler runs inside an OperationContext so the
 * runtime processes it spawns are attributed to it; and every mutating or denied request leaves an audit record.
 * Routes know nothing of any of this.
 */

export interface SecurityOptions {
  /** Which listener this app serves: tokens are always required on TCP. */
  listener: 'unix' | 'tcp';
  /** On the unix socket, whether a token is required (`--require-token`); ignored on TCP. */
  requireToken: boolean;
  authenticator: TokenAuthenticator;
  rateLimiter: RateLimiter;
  /** Absent only where no request is ever served (OpenAPI generation). */
  audit?: AuditLog | undefined;
  /** The registered paths, for a request whose method matches no route (answered 405 by the app). */
  routeMethods?: RouteMethods | undefined;
}

export interface RequestSecurity {
  token: string | null;
  scope: TokenScope | null;
  operation: OperationContext;
  startedMs: number;
  problemCode: string | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    security: RequestSecurity | null;
  }
  interface FastifyInstance {
    /**
     * The audit record of a request whose connection a route took over (a WebSocket session): fastify's
     * onResponse never runs for a hijacked reply, so the route reports how the session went once it is over
     * (101 for a session that ran, or the status of its failure).
     */
    auditTakenOver(request: FastifyRequest, status: number): void;
  }
}

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const DOCS_PREFIX = '/docs';
const CHALLENGE = 'Bearer realm="runcd"';

const securityPlugin: FastifyPluginAsync<SecurityOptions> = async (app, options) => {
  const requireToken = options.listener === 'tcp' || options.requireToken;
  app.decorateRequest('security', null);

  // Swagger UI's own routes (its page and static files) are registered by its plugin: readable without a token,
  // so a browser can open /docs before the user pastes a token into its Authorize dialog.
  assertRoutesDeclareAccess(app, [{ prefix: DOCS_PREFIX, access: 'public' }]);
  const accessTable = new RouteAccessTable();
  app.addHook('onRoute', (route) => {
    const access = accessTable.record(route);
    if (access !== undefined) documentSecurity(route, [route.method].flat(), access);
  });

  app.addHook('onRequest', async (request) => {
    const security: RequestSecurity = {
      token: null,
      scope: null,
      operation: new OperationContext(),
      startedMs: performance.now(),
      problemCode: null,
    };
    request.security = security;
    const origin = request.headers.origin;
    if (options.listener === 'tcp' && origin !== undefined) {
      throw new PolicyDeniedError(
        'origin_forbidden',
        `requests with an Origin header (${JSON.stringify(origin)}) are refused on TCP: runcd must never be driven by a web page through a browser`,
      );
    }
    const routeUrl = request.routeOptions.url;
    // A URL no route matches needs admin (default deny); a matched route always declared its access.
    const access =
      routeUrl === undefined
        ? unmatchedAccess(request.url, options.routeMethods, accessTable)
        : (request.routeOptions.config.access ?? 'admin');
    if (access === 'public') return;
    const header = request.headers.authorization;
    if (header === undefined) {
      if (requireToken) {
        throw new UnauthorizedError(
          'token_required',
          `a bearer token is required${options.listener === 'tcp' ? ' on TCP' : ''}: send "Authorization: Bearer <token>" (make one with: runcd token create --name NAME --scope ${access})`,
          CHALLENGE,
        );
      }
      // Anonymous on the unix socket: the socket's owner, group and mode are the authentication.
      security.scope = 'admin';
      return;
    }
    const secret = bearerSecret(header);
    const token = secret === undefined ? undefined : options.authenticator.authenticate(secret);
    if (!token) {
      throw new UnauthorizedError(
        'invalid_token',
        'the bearer token is not valid: it is malformed, unknown or revoked',
        `${CHALLENGE}, error="invalid_token"`,
      );
    }
    security.token = token.name;
    security.scope = token.scope;
    if (!scopeAllows(token.scope, access)) {
      throw new InsufficientScopeError(
        `token "${token.name}" has scope "${token.scope}"; ${request.method} ${routeUrl ?? 'on an unknown route'} needs "${access}"`,
        access,
      );
    }
    const decision = options.rateLimiter.take(token.name);
    if (!decision.allowed) {
      throw new RateLimitedError(
        `token "${token.name}" is over its limit of ${options.rateLimiter.ratePerSecond} requests per second; retry in ${decision.retryAfterSeconds} s`,
        decision.retryAfterSeconds,
      );
    }
  });

  // Callback style on purpose: `done` runs the handler synchronously inside the operation's async context.
  app.addHook('preHandler', (request, _reply, done) => {
    if (request.security) runInOperation(request.security.operation, done);
    else done();
  });

  app.addHook('onSend', async (request, reply, payload) => {
    if (request.security && reply.statusCode >= 400 && typeof payload === 'string') {
      request.security.problemCode = problemCodeOf(payload);
    }
    return payload;
  });

  app.addHook('onResponse', async (request, reply) => audit(request, reply.statusCode));
  app.decorate('auditTakenOver', (request: FastifyRequest, status: number) => audit(request, status, true));

  function audit(request: FastifyRequest, status: number, takenOver = false): void {
    const security = request.security;
    if (!security || !options.audit) return;
    const denied = status === 401 || status === 403 || status === 429;
    const ranRuntime = security.operation.invocations.length > 0;
    if (READ_METHODS.has(request.method) && !denied && !ranRuntime && !takenOver) return;
    options.audit.write({
      time: new Date().toISOString(),
      requestId: request.id,
      transport: options.listener,
      peer: peerOf(request, options.listener),
      token: security.token,
      scope: security.scope,
      method: request.method,
      route: request.routeOptions.url ?? null,
      url: request.url.slice(0, 2048),
      containerId: containerIdOf(request),
      status,
      outcome: outcomeFor(status),
      code: security.problemCode,
      runtime: security.operation.invocations.map((invocation) => ({
        argv: [invocation.binary, ...invocation.argv],
        exitCode: invocation.exitCode ?? null,
        durationMs: Math.round(invocation.durationMs),
        timedOut: invocation.timedOut,
      })),
      durationMs: Math.round(performance.now() - security.startedMs),
    });
  }
};

/**
 * Adds what this plugin can answer to each documented route: the bearer requirement (none for public routes)
 * and the 401/403/429 (and 413/415 where a body is read, 503/504 where the runtime may run) problems.
 */
function documentSecurity(route: RouteOptions, methods: string[], access: RouteAccess): void {
  const schema = route.schema as (FastifySchema & { hide?: boolean; security?: unknown }) | undefined;
  if (!schema || schema.hide) return;
  schema.security = access === 'public' ? [] : [{ bearerAuth: [] }];
  if (access === 'public') return;
  const statuses = [401, 403, 429];
  if (schema.body) statuses.push(413, 415);
  if (!methods.every((method) => READ_METHODS.has(method))) statuses.push(503, 504);
  const responses = (schema.response ?? {}) as Record<string, unknown>;
  for (const status of statuses) responses[status] ??= ProblemSchema;
  schema.response = responses;
}

/**
 * A method no route has, on a path that exists: public when every method of the path is (TRACE /healthz gets its
 * 405 without a token, as GET /healthz needs none), else as strict as an unknown route, so the 405 and its Allow
 * list are only told to a caller allowed to use the path.
 */
function unmatchedAccess(
  url: string,
  routeMethods: RouteMethods | undefined,
  accessTable: RouteAccessTable,
): RouteAccess {
  const known = routeMethods?.find(url);
  if (known && known.methods.every((method) => accessTable.of(method, known.url) === 'public'))
    return 'public';
  return 'admin';
}

function problemCodeOf(payload: string): string | null {
  try {
    const code = (JSON.parse(payload) as { code?: unknown }).code;
    return typeof code === 'string' ? code : null;
  } catch {
    return null;
  }
}

function peerOf(request: FastifyRequest, listener: 'unix' | 'tcp'): string {
  if (listener === 'unix') return 'unix';
  const socket = request.socket as Partial<TLSSocket>;
  const address = `${request.socket.remoteAddress ?? '?'}:${request.socket.remotePort ?? '?'}`;
  const subject = socket.getPeerCertificate?.()?.subject;
  const commonName = subject ? [subject.CN].flat()[0] : undefined;
  return commonName ? `tcp:${address} cert CN=${commonName}` : `tcp:${address}`;
}

function containerIdOf(request: FastifyRequest): string | null {
  const fromParams = (request.params as { id?: unknown } | undefined)?.id;
  const fromBody =
    request.method === 'POST' && request.routeOptions.url === '/containers'
      ? (request.body as { id?: unknown } | undefined)?.id
      : undefined;
  const id = typeof fromParams === 'string' ? fromParams : fromBody;
  return typeof id === 'string' ? id.slice(0, 128) : null;
}

export default fastifyPlugin(securityPlugin, { name: 'runcd-security', fastify: '5.x' });
