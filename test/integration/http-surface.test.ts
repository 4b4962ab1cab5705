import t from 'tap';
import { makeSandbox, startInProcess } from '../helpers/sandbox.js';

/** A method no route has, on a path that exists, is a 405 with Allow on both listeners. */
t.test('undefined methods on known paths answer 405 with Allow', async (t) => {
  const sandbox = makeSandbox(t, 'meth');
  const daemon = await startInProcess(t, sandbox, { tcp: { host: '127.0.0.1', port: 0 }, docker: true });
  const unix = daemon.app;
  const tcp = daemon.tcpApp!;

  t.test('on the unix socket', async (t) => {
    for (const [method, url, allow] of [
      ['TRACE', '/bundles', 'GET, HEAD, POST'],
      ['QUERY', '/containers/x/start', 'POST'],
      ['PUT', '/containers/x', 'DELETE, GET, HEAD'],
      ['DELETE', '/containers/', 'GET, HEAD, POST'],
      ['POST', '/healthz?x=1', 'GET, HEAD'],
      ['OPTIONS', '/events', 'GET, HEAD'],
    ] as const) {
      const answer = await unix.inject({ method, url });
      t.equal(answer.statusCode, 405, `${method} ${url}`);
      t.equal(answer.headers.allow, allow, `${method} ${url} Allow`);
      t.match(answer.headers['content-type'], /^application\/problem\+json/);
      t.match(answer.json(), { status: 405, code: 'method_not_allowed', detail: new RegExp(`^${method} `) });
    }
    const unknown = await unix.inject({ method: 'TRACE', url: '/nowhere' });
    t.equal(unknown.statusCode, 404, 'an unknown path is still a 404');
    t.equal((await unix.inject({ method: 'HEAD', url: '/healthz' })).statusCode, 200, 'HEAD of a GET route');
  });

  t.test('on TCP, public paths answer 405 without a token; the others still want one', async (t) => {
    for (const url of ['/healthz', '/readyz']) {
      for (const method of ['TRACE', 'POST', 'DELETE', 'QUERY'] as const) {
        const answer = await tcp.inject({ method, url });
        t.equal(answer.statusCode, 405, `${method} ${url}`);
        t.equal(answer.headers.allow, 'GET, HEAD');
      }
    }
    const guarded = await tcp.inject({ method: 'TRACE', url: '/bundles' });
    t.equal(guarded.statusCode, 401, 'TRACE /bundles without a token');
    t.equal(guarded.json().code, 'token_required');
  });
});

t.test('unknown query parameters are a 400 naming them; the Docker socket ignores them', async (t) => {
  const sandbox = makeSandbox(t, 'qry');
  const daemon = await startInProcess(t, sandbox, { docker: true });
  const api = daemon.app;
  for (const [method, url, name] of [
    ['GET', '/containers?stauts=running', 'stauts'],
    ['DELETE', '/containers/x?forse=true', 'forse'],
    ['POST', '/containers/x/kill?sigal=KILL', 'sigal'],
    ['POST', '/containers/x/start?now=1', 'now'],
    ['GET', '/bundles?all=1', 'all'],
    ['GET', '/events?since=0&until=0&typ=die', 'typ'],
  ] as const) {
    const answer = await api.inject({ method, url });
    t.equal(answer.statusCode, 400, `${method} ${url}`);
    t.match(answer.json(), { code: 'invalid_query', detail: new RegExp(`"${name}"`) }, `${method} ${url}`);
  }
  t.equal((await api.inject({ method: 'GET', url: '/containers?status=running' })).statusCode, 200);
  for (const signal of ['SIGKILL%20', '%20KILL', '9%0A']) {
    const answer = await api.inject({ method: 'POST', url: `/containers/x/kill?signal=${signal}` });
    t.equal(answer.statusCode, 400, `signal=${signal} is refused, not trimmed`);
    t.equal(answer.json().code, 'invalid_signal');
  }
  t.equal(
    (await api.inject({ method: 'GET', url: '/healthz?probe=1' })).statusCode,
    200,
    'system routes spared',
  );
  const docker = await daemon.dockerApp!.inject({
    method: 'GET',
    url: '/v1.43/containers/json?all=1&size=0&x=y',
  });
  t.equal(docker.statusCode, 200, 'Docker clients send parameters runcd never reads');
});
