import type { FastifyInstance, RouteOptions } from 'fastify';
import type { TokenScope } from '../store/token-repository.js';

/**
 * Who may call a route is said by the route itself (`config: { access }`), so adding a route is one edit and
 * the Docker listener's routes cannot inherit a native route's scope because their URLs happen to match.
 * A route that says nothing does not start: the check runs when the app is readied, before it listens.
 */

export type RouteAccess = TokenScope | 'public';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The least scope a token needs for this route; 'public' needs none. */
    access?: RouteAccess;
  }
}

/** The access a registered route declared, by method and URL (for requests whose method matches no route). */
export class RouteAccessTable {
  private readonly byRoute = new Map<string, RouteAccess>();

  record(route: RouteOptions): RouteAccess | undefined {
    const access = route.config?.access;
    if (access === undefined) return undefined;
    for (const method of [route.method].flat()) this.byRoute.set(`${method} ${route.url}`, access);
    return access;
  }

  of(method: string, url: string): RouteAccess | undefined {
    // fastify answers HEAD with the GET route: the same rule applies to both.
    return (
      this.byRoute.get(`${method} ${url}`) ?? (method === 'HEAD' ? this.byRoute.get(`GET ${url}`) : undefined)
    );
  }
}

/**
 * Makes `app.ready()` (and so listen) fail, naming every route registered after this call that declares no
 * access. `exempt` names URL prefixes registered by third-party plugins (Swagger UI's static files), whose
 * access the caller sets itself.
 */
export function assertRoutesDeclareAccess(
  app: FastifyInstance,
  exempt: { prefix: string; access: RouteAccess }[] = [],
): void {
  const undeclared: string[] = [];
  app.addHook('onRoute', (route) => {
    if (route.config?.access !== undefined) return;
    const rule = exempt.find(({ prefix }) => route.url === prefix || route.url.startsWith(`${prefix}/`));
    if (rule) {
      route.config = { ...route.config, access: rule.access };
      return;
    }
    undeclared.push(`${[route.method].flat().join(',')} ${route.url}`);
  });
  app.addHook('onReady', async () => {
    if (undeclared.length > 0) {
      throw new Error(`routes without a declared access (config.access): ${undeclared.join('; ')}`);
    }
  });
}
