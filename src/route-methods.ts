/**
 * The methods each registered path answers, so a request whose path exists under other methods gets a 405 with
 * `Allow` (RFC 9110 §15.5.6) rather than a 404 that says the resource does not exist.
 */
export interface KnownPath {
  /** The path as registered (`/containers/:id/start`). */
  url: string;
  methods: readonly string[];
}

export class RouteMethods {
  private readonly paths = new Map<string, { pattern: RegExp; methods: Set<string> }>();

  add(method: string, url: string): void {
    let entry = this.paths.get(url);
    if (!entry) {
      entry = { pattern: patternOf(url), methods: new Set() };
      this.paths.set(url, entry);
    }
    entry.methods.add(method);
    // fastify answers HEAD with every GET route.
    if (method === 'GET') entry.methods.add('HEAD');
  }

  /**
   * The registered path `requestUrl` (query string and all) falls under, if any. Where several match (a static
   * `/bundles/upload` beside `/bundles/:id`), the methods are their union: the router would route each of them.
   */
  find(requestUrl: string): KnownPath | undefined {
    const path = requestUrl.split('?', 1)[0]!;
    let found: { url: string; methods: Set<string> } | undefined;
    for (const [url, entry] of this.paths) {
      if (!entry.pattern.test(path)) continue;
      found ??= { url, methods: new Set() };
      for (const method of entry.methods) found.methods.add(method);
    }
    return found && { url: found.url, methods: [...found.methods].sort() };
  }
}

/** find-my-way's syntax as a regular expression: `:name` is one segment, `*` the rest; a trailing slash is ignored. */
function patternOf(url: string): RegExp {
  const body = url
    .replace(/\/$/, '')
    .split('/')
    .map((segment) =>
      segment === '*'
        ? '.*'
        : segment.startsWith(':')
          ? '[^/]+'
          : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('/');
  return new RegExp(`^${body}/?$`);
}
