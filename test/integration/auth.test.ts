import { readFileSync } from 'node:fs';
import t from 'tap';
import type { AuditRecord } from '../../src/security/audit-log.js';
import { issueToken } from '../../src/security/tokens.js';
import { makeSandbox, startInProcess } from '../helpers/sandbox.js';

/** Scoped bearer tokens on the unix socket with --require-token, and the audit trail they leave. */
t.test('tokens: who may call what', async (t) => {
  const sandbox = makeSandbox(t, 'auth');
  const daemon = await startInProcess(t, sandbox, { requireToken: true, rateLimitPerSecond: 0 });
  const bundle = sandbox.bundle('b');
  const secrets = {
    read: issueToken(daemon.tokens, 'reader', 'read'),
    operate: issueToken(daemon.tokens, 'operator', 'operate'),
    admin: issueToken(daemon.tokens, 'admin', 'admin'),
  };
  const call = async (method: string, url: string, secret?: string, payload?: object) => {
    const response = await daemon.app.inject({
      method: method as 'GET',
      url,
      headers: secret === undefined ? {} : { authorization: `Bearer ${secret}` },
      ...(payload ? { payload } : {}),
    });
    return {
      status: response.statusCode,
      headers: response.headers,
      body: (response.body ? response.json() : {}) as Record<string, string>,
    };
  };
  const id = sandbox.id('c');

  t.test('no token is a 401 with a Bearer challenge; health needs none', async (t) => {
    const before = daemon.runner.spawnCount;
    const missing = await call('GET', '/containers');
    t.equal(missing.status, 401);
    t.equal(missing.body.code, 'token_required');
    t.equal(missing.headers['www-authenticate'], 'Bearer realm="runcd"');
    t.match(missing.body.detail, /runcd token create --name NAME --scope read/);
    t.equal((await call('POST', '/containers', undefined, { id, bundle })).status, 401);
    t.equal((await call('GET', '/healthz')).status, 200);
    t.equal(daemon.runner.spawnCount, before);
  });

  t.test('a wrong token is a 401 invalid_token', async (t) => {
    for (const secret of [
      'nope',
      secrets.admin + 'x',
      secrets.admin.slice(0, -1),
      `${secrets.admin} ${secrets.admin}`,
    ]) {
      const wrong = await call('DELETE', `/containers/${id}`, secret);
      t.equal(wrong.status, 401, secret.slice(0, 12));
      t.equal(wrong.body.code, 'invalid_token');
      t.equal(wrong.headers['www-authenticate'], 'Bearer realm="runcd", error="invalid_token"');
    }
  });

  t.test('read: reads everything, writes nothing', async (t) => {
    const before = daemon.runner.spawnCount;
    t.equal((await call('GET', '/containers', secrets.read)).status, 200);
    t.equal(
      (await call('GET', `/containers/${id}`, secrets.read)).status,
      404,
      'a read of a missing container is a 404',
    );
    const create = await call('POST', '/containers', secrets.read, { id, bundle });
    t.equal(create.status, 403);
    t.equal(create.body.code, 'insufficient_scope');
    t.equal(create.body.detail, 'token "reader" has scope "read"; POST /containers needs "admin"');
    t.equal(
      create.headers['www-authenticate'],
      'Bearer realm="runcd", error="insufficient_scope", scope="admin"',
    );
    t.equal(
      (await call('POST', `/containers/${id}/kill?signal=KILL`, secrets.read)).body.code,
      'insufficient_scope',
    );
    t.equal((await call('DELETE', `/containers/${id}`, secrets.read)).status, 403);
    t.equal(
      (await call('POST', '/nope', secrets.read)).body.code,
      'insufficient_scope',
      'unknown routes need admin',
    );
    t.equal(daemon.runner.spawnCount, before, 'no denied request spawned anything');
  });

  t.test('operate: changes run state, cannot create, exec or delete', async (t) => {
    t.equal(
      (await call('POST', '/containers', secrets.operate, { id, bundle })).body.code,
      'insufficient_scope',
    );
    t.equal((await call('POST', '/containers', secrets.admin, { id, bundle })).status, 201, 'admin creates');
    t.equal((await call('POST', `/containers/${id}/start`, secrets.operate)).status, 200, 'operate starts');
    const exec = await call('POST', `/containers/${id}/exec`, secrets.operate, { args: ['true'] });
    t.equal(exec.status, 403);
    t.match(exec.body.detail, /needs "admin"/);
    t.equal(
      (await call('POST', `/containers/${id}/kill?signal=KILL`, secrets.operate)).status,
      204,
      'operate kills',
    );
    t.equal((await call('DELETE', `/containers/${id}`, secrets.operate)).status, 403);
    t.equal((await call('DELETE', `/containers/${id}`, secrets.admin)).status, 204, 'admin deletes');
  });

  t.test('a revoked token stops working at once', async (t) => {
    t.equal((await call('GET', '/containers', secrets.read)).status, 200);
    t.ok(daemon.tokens.remove('reader'));
    const revoked = await call('GET', '/containers', secrets.read);
    t.equal(revoked.status, 401);
    t.equal(revoked.body.code, 'invalid_token');
  });

  t.test('every mutating or denied call is audited, and no record holds a secret', async (t) => {
    const text = readFileSync(daemon.auditLogPath, 'utf8');
    for (const secret of Object.values(secrets)) {
      t.notOk(text.includes(secret), 'the secret is nowhere in the audit log');
      t.notOk(text.includes(secret.slice(4, 20)), 'not even part of it');
    }
    t.notOk(/authorization|bearer/i.test(text), 'no Authorization header either');
    const records = text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as AuditRecord);
    const find = (method: string, route: string, token: string | null, status: number) =>
      records.find(
        (r) => r.method === method && r.route === route && r.token === token && r.status === status,
      );
    t.match(find('GET', '/containers', null, 401), {
      outcome: 'denied',
      code: 'token_required',
      scope: null,
    });
    t.match(find('DELETE', '/containers/:id', null, 401), {
      outcome: 'denied',
      code: 'invalid_token',
      containerId: id,
    });
    // Refused before its body was read: the body's id is unknown, and that is as it should be.
    t.match(find('POST', '/containers', 'reader', 403), {
      outcome: 'denied',
      code: 'insufficient_scope',
      containerId: null,
    });
    t.match(find('GET', '/containers', null, 401), { transport: 'unix', peer: 'unix' });
    const created = find('POST', '/containers', 'admin', 201);
    t.match(created, { outcome: 'ok', scope: 'admin', containerId: id, code: null });
    t.ok(
      created?.runtime.some(
        (run) => run.argv[0]?.endsWith('conmon') && run.argv.includes(id) && run.exitCode === 0,
      ),
      'the create record names conmon (which runs runc create) and its exit status',
    );
    t.equal(
      created?.runtime.length,
      1,
      'and nothing else: a create runs no runc state (conmon reports the pid), so the record lists every process',
    );
    const killed = find('POST', '/containers/:id/kill', 'operator', 204);
    t.ok(
      killed?.runtime.some((run) => run.argv.includes('kill') && run.argv.includes('9')),
      'runc kill ID 9',
    );
    t.match(find('DELETE', '/containers/:id', 'admin', 204), { outcome: 'ok' });
    t.notOk(
      records.some((r) => r.method === 'GET' && r.status === 200),
      'successful reads are not audited',
    );
    for (const record of records) t.ok(record.durationMs >= 0 && record.requestId && record.time, 'complete');
  });
});

t.test('the rate limit is per token: 429 with Retry-After, others unaffected', async (t) => {
  const sandbox = makeSandbox(t, 'rate');
  const daemon = await startInProcess(t, sandbox, { requireToken: true, rateLimitPerSecond: 1 });
  const busy = issueToken(daemon.tokens, 'busy', 'read');
  const calm = issueToken(daemon.tokens, 'calm', 'read');
  const get = (secret: string) =>
    daemon.app.inject({ method: 'GET', url: '/containers', headers: { authorization: `Bearer ${secret}` } });
  // A burst of twice the rate passes; the next one does not (the refill in between is far below one request).
  t.equal((await get(busy)).statusCode, 200);
  t.equal((await get(busy)).statusCode, 200);
  const limited = await get(busy);
  t.equal(limited.statusCode, 429);
  t.equal(limited.json().code, 'rate_limited');
  t.equal(limited.headers['retry-after'], '1');
  t.match(limited.json().detail, /token "busy" is over its limit of 1 requests per second/);
  t.equal((await get(calm)).statusCode, 200, 'another token has its own budget');
  const audit = readFileSync(daemon.auditLogPath, 'utf8');
  t.match(audit, /"token":"busy".*"status":429.*"outcome":"denied"/, 'the refusal is audited');
});
