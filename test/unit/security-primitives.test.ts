import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import Fastify from 'fastify';
import { buildInspectionApp, generateOpenApiDocument } from '../../src/openapi.js';
import { ConcurrencyLimiter } from '../../src/runtime/concurrency-limiter.js';
import { RateLimiter } from '../../src/security/rate-limiter.js';
import { assertRoutesDeclareAccess } from '../../src/security/route-access.js';
import { scopeAllows } from '../../src/security/scopes.js';
import {
  bearerSecret,
  hashTokenSecret,
  issueToken,
  TokenAuthenticator,
  TOKEN_PREFIX,
} from '../../src/security/tokens.js';
import { resolveGroup } from '../../src/security/unix-socket.js';
import { openDatabase } from '../../src/store/database.js';
import { TokenRepository } from '../../src/store/token-repository.js';

type Inspection = Awaited<ReturnType<typeof buildInspectionApp>>;

/** The least scope that gets past authorization on the route (any answer but 401/403); 'public' needs no token. */
async function leastScope(inspection: Inspection, method: string, url: string): Promise<string> {
  const anonymous = await inspection.app.inject({ method: method as 'GET', url });
  if (anonymous.statusCode !== 401) return 'public';
  for (const scope of ['read', 'operate', 'admin'] as const) {
    const answer = await inspection.app.inject({
      method: method as 'GET',
      url,
      headers: { authorization: `Bearer ${issueToken(inspection.tokens, `t-${randomUUID()}`, scope)}` },
    });
    if (answer.statusCode !== 401 && answer.statusCode !== 403) return scope;
  }
  return 'nobody';
}

t.test(
  'each route declares its access: public health, read for GET, operate for run state, admin for the rest',
  async (t) => {
    const inspection = await buildInspectionApp({ requireToken: true });
    t.teardown(() => inspection.close());
    const least = (method: string, url: string) => leastScope(inspection, method, url);
    t.equal(await least('GET', '/healthz'), 'public');
    t.equal(await least('HEAD', '/healthz'), 'public', 'HEAD follows GET');
    t.equal(await least('GET', '/readyz'), 'public');
    t.equal(await least('GET', '/docs'), 'public', 'Swagger UI opens before a token is pasted into it');
    t.equal(await least('GET', '/openapi.json'), 'public');
    t.equal(
      await least('POST', '/docs'),
      'public',
      'a method the docs lack is a 405, told without a token as for /healthz',
    );
    t.equal(await least('GET', '/docsx'), 'admin', 'a URL that merely starts with /docs matches no route');
    t.equal(await least('GET', '/info'), 'read');
    t.equal(await least('GET', '/containers'), 'read');
    t.equal(await least('HEAD', '/containers/x'), 'read');
    t.equal(await least('POST', '/containers/x/wait'), 'read');
    for (const action of ['start', 'stop', 'kill', 'restart', 'pause', 'resume']) {
      t.equal(await least('POST', `/containers/x/${action}`), 'operate', action);
    }
    t.equal(await least('POST', '/containers'), 'admin');
    t.equal(await least('POST', '/images/pull'), 'admin', 'a pull writes images and reaches registries');
    t.equal(await least('POST', '/images/push'), 'admin');
    t.equal(await least('POST', '/containers/x/exec'), 'admin');
    t.equal(await least('DELETE', '/containers/x'), 'admin');
    t.equal(
      await least('POST', '/containers/x/something-new'),
      'admin',
      'URLs that match no route need admin',
    );
    t.ok(scopeAllows('admin', 'read'));
    t.ok(scopeAllows('operate', 'operate'));
    t.notOk(scopeAllows('read', 'operate'));
    t.notOk(scopeAllows('operate', 'admin'));
  },
);

t.test('a route that declares no access stops the app from starting', async (t) => {
  const app = Fastify();
  assertRoutesDeclareAccess(app);
  app.get('/declared', { config: { access: 'read' } }, async () => 'ok');
  app.post('/forgotten', async () => 'ok');
  await t.rejects(async () => {
    await app.ready();
  }, /routes without a declared access \(config\.access\): POST \/forgotten/);
});

t.test('tokens: 256-bit secrets, stored as hashes, matched in constant time, revocable', async (t) => {
  const db = openDatabase(':memory:');
  t.teardown(() => db.close());
  const tokens = new TokenRepository(db);
  const secret = issueToken(tokens, 'ci', 'read');
  t.match(secret, new RegExp(`^${TOKEN_PREFIX}[A-Za-z0-9_-]{43}$`), '32 random bytes, base64url');
  t.not(issueToken(tokens, 'other', 'admin'), secret, 'every secret is new');
  const stored = tokens.all().find((token) => token.name === 'ci')!;
  t.same(stored.hash, hashTokenSecret(secret), 'only the hash is stored');
  t.notOk(JSON.stringify(db.prepare('SELECT * FROM tokens').all()).includes(secret.slice(4)));
  const authenticator = new TokenAuthenticator(tokens);
  t.match(authenticator.authenticate(secret), { name: 'ci', scope: 'read' });
  t.equal(authenticator.authenticate(secret + 'x'), undefined);
  t.equal(authenticator.authenticate(''), undefined);
  t.throws(() => issueToken(tokens, 'ci', 'admin'), /already exists; revoke it first/);
  t.throws(() => issueToken(tokens, '../x', 'admin'), /token name/);
  t.ok(tokens.remove('ci'));
  t.equal(authenticator.authenticate(secret), undefined, 'a revoked token matches nothing at once');
  t.notOk(tokens.remove('ci'));
  t.equal(bearerSecret(`Bearer ${secret}`), secret);
  t.equal(bearerSecret(`bearer   ${secret}`), secret);
  t.equal(bearerSecret(`Basic ${secret}`), undefined);
  t.equal(bearerSecret('Bearer'), undefined);
  t.equal(bearerSecret('Bearer a b'), undefined);
});

t.test('the rate limiter allows a burst, then refills at the rate, and says when to retry', async (t) => {
  let now = 0;
  const limiter = new RateLimiter(2, 4, () => now);
  for (let i = 0; i < 4; i++) t.same(limiter.take('ci'), { allowed: true }, `burst ${i}`);
  t.same(limiter.take('ci'), { allowed: false, retryAfterSeconds: 1 });
  t.same(limiter.take('other'), { allowed: true }, 'buckets are per key');
  now += 500;
  t.same(limiter.take('ci'), { allowed: true }, 'half a second refills one request at 2/s');
  t.same(limiter.take('ci'), { allowed: false, retryAfterSeconds: 1 });
  now += 60_000;
  for (let i = 0; i < 4; i++)
    t.same(limiter.take('ci'), { allowed: true }, 'refilled, but never past the burst');
  t.equal(limiter.take('ci').allowed, false);
  const slow = new RateLimiter(0.1, 1, () => now);
  slow.take('x');
  t.same(slow.take('x'), { allowed: false, retryAfterSeconds: 10 });
  const off = new RateLimiter(0, 0);
  for (let i = 0; i < 100; i++) t.equal(off.take('x').allowed, true);
});

t.test('the concurrency limiter caps holders and waiters, FIFO', async (t) => {
  const limiter = new ConcurrencyLimiter(1, 1);
  const first = await limiter.tryAcquire()!;
  const order: string[] = [];
  const second = limiter.tryAcquire()!.then((release) => {
    order.push('second');
    return release;
  });
  t.equal(limiter.tryAcquire(), undefined, 'one running and one waiting: a third is refused');
  const forced = limiter.tryAcquire({ force: true })!.then((release) => {
    order.push('forced');
    return release;
  });
  t.same([limiter.running, limiter.queued], [1, 2]);
  first();
  first();
  (await second)();
  (await forced)();
  t.same(order, ['second', 'forced']);
  t.same([limiter.running, limiter.queued], [0, 0], 'releasing twice frees one slot only');
  t.throws(() => new ConcurrencyLimiter(0, 1), RangeError);
});

t.test('socket groups resolve by name or number', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'runcd-group-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const groupFile = join(dir, 'group');
  writeFileSync(groupFile, 'root:x:0:\nrunc-users:x:1234:alice,bob\n');
  t.equal(resolveGroup('runc-users', groupFile), 1234);
  t.equal(resolveGroup('0', groupFile), 0);
  t.throws(
    () => resolveGroup('nobody-here', groupFile),
    /no such group \(create it with: groupadd nobody-here\)/,
  );
});

t.test('every route the API serves has a deliberate scope', async (t) => {
  // When a route is added, this list must be extended: the scope it gets is then a decision, not an accident.
  const expected: Record<string, string> = {
    'GET /healthz': 'public',
    'GET /readyz': 'public',
    'GET /info': 'read',
    'GET /metrics': 'read',
    'GET /containers': 'read',
    'GET /containers/:id': 'read',
    'GET /containers/:id/logs': 'read',
    'GET /containers/:id/processes': 'read',
    'GET /containers/:id/stats': 'read',
    'GET /events': 'read',
    'POST /containers/:id/wait': 'read',
    'POST /containers/:id/start': 'operate',
    'POST /containers/:id/stop': 'operate',
    'POST /containers/:id/kill': 'operate',
    'POST /containers/:id/restart': 'operate',
    'POST /containers/:id/pause': 'operate',
    'POST /containers/:id/resume': 'operate',
    'POST /containers': 'admin',
    'POST /containers/:id/exec': 'admin',
    'POST /containers/:id/exec/stdin': 'admin',
    'GET /containers/:id/exec/session': 'admin',
    'GET /containers/:id/attach/session': 'admin',
    'DELETE /containers/:id': 'admin',
    // Managed bundles: reading them is `read`; making, filling and deleting them decides what runs: `admin`.
    'GET /bundles': 'read',
    'GET /bundles/:id': 'read',
    'POST /bundles': 'admin',
    'PUT /bundles/:id/rootfs': 'admin',
    'DELETE /bundles/:id': 'admin',
    // Limits decide how much of the host a container may take, not just whether it runs.
    'PATCH /containers/:id/resources': 'admin',
    // Networks: reading is `read`; a network is a bridge and NAT/firewall rules on the host: `admin`.
    'GET /networks': 'read',
    'GET /networks/:name': 'read',
    'POST /networks': 'admin',
    'DELETE /networks/:name': 'admin',
    // Registries: a pull writes an image (a bundle) and a push sends one off the host: `admin`.
    'POST /images/pull': 'admin',
    'POST /images/push': 'admin',
  };
  const spec = (await generateOpenApiDocument()) as { paths: Record<string, Record<string, unknown>> };
  const inspection = await buildInspectionApp({ requireToken: true });
  t.teardown(() => inspection.close());
  const actual: Record<string, string> = {};
  for (const [path, operations] of Object.entries(spec.paths)) {
    for (const method of Object.keys(operations)) {
      const url = path.replace(/\{(\w+)\}/g, ':$1');
      actual[`${method.toUpperCase()} ${url}`] = await leastScope(
        inspection,
        method.toUpperCase(),
        // The event stream would follow forever: a window in the past ends it.
        path.replace(/\{(\w+)\}/g, 'no-such-thing') + (path === '/events' ? '?until=1' : ''),
      );
    }
  }
  t.same(actual, expected);
});
