import t from 'tap';
import { cgroupVersionOf } from '../../src/observability/host-facts.js';
import { requestIdFor } from '../../src/observability/http-observability.js';
import { createLogger } from '../../src/observability/logger.js';
import { runInRequest } from '../../src/observability/request-context.js';

function capture() {
  const lines: string[] = [];
  const logger = createLogger({
    level: 'info',
    destination: { write: (line: string) => void lines.push(line) },
  });
  return { logger, lines };
}

t.test('secrets are redacted wherever a header, request or token could carry them', async (t) => {
  const { logger, lines } = capture();
  const secret = 'rcd_0123456789abcdef';
  logger.info({ authorization: `Bearer ${secret}` }, 'bare');
  logger.info({ headers: { authorization: `Bearer ${secret}` } }, 'headers');
  logger.info({ req: { headers: { authorization: `Bearer ${secret}`, host: 'localhost' } } }, 'req');
  logger.info({ request: { headers: { authorization: `Bearer ${secret}` } } }, 'request');
  logger.info({ upstream: { headers: { authorization: `Bearer ${secret}` } } }, 'nested headers');
  logger.info({ token: { name: 'ci', secret } }, 'token');
  logger.info({ created: { secret } }, 'any secret field');
  t.equal(lines.length, 7);
  for (const line of lines) t.notMatch(line, secret, `${JSON.parse(line).msg}: no secret`);
  t.match(lines[2], /"host":"localhost"/, 'the rest of a redacted object stays');
  t.match(lines[5], /"name":"ci"/, 'token names stay: they are how the audit trail names callers');
});

t.test('lines logged inside a request carry its id once, lines outside carry none', async (t) => {
  const { logger, lines } = capture();
  const lifecycle = logger.child({ component: 'lifecycle' });
  const requestLogger = logger.child({ reqId: 'req-1' });
  runInRequest({ requestId: 'req-1' }, () => {
    lifecycle.info('container created');
    requestLogger.info('request line');
  });
  await runInRequest({ requestId: 'req-2' }, async () => {
    await new Promise((resolve) => setTimeout(resolve, 1));
    lifecycle.info('after an await');
  });
  lifecycle.info('exit seen by inotify');
  const parsed = lines.map((line) => JSON.parse(line) as { msg: string; reqId?: string });
  t.same(
    parsed.map((line) => [line.msg, line.reqId]),
    [
      ['container created', 'req-1'],
      ['request line', 'req-1'],
      ['after an await', 'req-2'],
      ['exit seen by inotify', undefined],
    ],
  );
  t.equal(lines[1]!.match(/"reqId"/g)?.length, 1, 'a request logger line does not get the id twice');
});

t.test('a caller-chosen request id is kept only when it is a sane token', async (t) => {
  t.equal(requestIdFor('trace-1234'), 'trace-1234');
  t.equal(
    requestIdFor('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'),
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  );
  for (const hostile of ['', 'a b', 'x'.repeat(129), 'quote"d', 'new\nline', '{"json":1}']) {
    t.match(
      requestIdFor(hostile),
      /^[0-9a-f]{8}-[0-9a-f]{4}-/,
      `${JSON.stringify(hostile.slice(0, 20))} is replaced`,
    );
  }
  t.match(requestIdFor(['a', 'b']), /^[0-9a-f]{8}-/, 'a repeated header is replaced');
  t.match(requestIdFor(undefined), /^[0-9a-f]{8}-/);
});

const HYBRID = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`;
const V1 = HYBRID.split('\n').slice(0, 3).join('\n');
const V2 = `35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate`;

t.test('the cgroup version comes from what is mounted under /sys/fs/cgroup', async (t) => {
  t.equal(cgroupVersionOf(HYBRID), 'hybrid');
  t.equal(cgroupVersionOf(V1), 'v1');
  t.equal(cgroupVersionOf(V2), 'v2');
  t.equal(cgroupVersionOf(''), 'unknown');
  t.equal(
    cgroupVersionOf('50 22 0:40 / /mnt/cgroup rw - cgroup2 cgroup2 rw'),
    'unknown',
    'a cgroup2 mount elsewhere is not the host hierarchy',
  );
});
