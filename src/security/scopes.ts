import type { TokenScope } from '../store/token-repository.js';

/**
 * Who may call what: one table, keyed by method and route URL as registered, read by the security plugin
 * before any handler runs. Rules, in order: the table; then GET and HEAD need `read`; everything else, including
 * any route this table does not know and any URL that matches no route, needs `admin` (default deny).
 */

export type RouteAccess = TokenScope | 'public';

export const SCOPES: readonly TokenScope[] = ['read', 'operate', 'admin'];

const RANK: Readonly<Record<TokenScope, number>> = { read: 1, operate: 2, admin: 3 };

export const ROUTE_ACCESS: Readonly<Record<string, RouteAccess>> = {
  // Liveness only; lets health checks run without a secret and says nothing about containers.
  'GET /healthz': 'public',
  // Readiness for probes and load balancers: says whether runcd can work, nothing about containers; its checks
  // are shared and cached, so anonymous probing cannot make runcd spawn at will.
  'GET /readyz': 'public',
  // The API description (the same document the repository publishes), so a browser can open /docs before the
  // user pastes a token into its Authorize dialog. Every operation it lists still needs its own scope.
  'GET /openapi.json': 'public',
  // Waiting for an exit changes nothing, whatever its method.
  'POST /containers/:id/wait': 'read',
  // `operate`: change the run state of containers that exist, never what runs in them.
  'POST /containers/:id/start': 'operate',
  'POST /containers/:id/stop': 'operate',
  'POST /containers/:id/kill': 'operate',
  'POST /containers/:id/restart': 'operate',
  'POST /containers/:id/pause': 'operate',
  'POST /containers/:id/resume': 'operate',
};

/** Swagger UI and its static files. */
const DOCS_PREFIX = '/docs';

export function requiredAccess(method: string, routeUrl: string | undefined): RouteAccess {
  if (routeUrl === undefined) return 'admin';
  if (
    (method === 'GET' || method === 'HEAD') &&
    (routeUrl === DOCS_PREFIX || routeUrl.startsWith(`${DOCS_PREFIX}/`))
  )
    return 'public';
  // fastify answers HEAD with the GET route (and its schema): the same rule must apply to both.
  const listed = ROUTE_ACCESS[`${method === 'HEAD' ? 'GET' : method} ${routeUrl}`];
  if (listed) return listed;
  if (method === 'GET' || method === 'HEAD') return 'read';
  return 'admin';
}

/** Scopes are nested: admin can do what operate can, operate what read can. */
export function scopeAllows(granted: TokenScope, required: TokenScope): boolean {
  return RANK[granted] >= RANK[required];
}

export function isScope(value: string): value is TokenScope {
  return (SCOPES as readonly string[]).includes(value);
}
