import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { openDaemon, type Daemon, type DaemonConfig } from '../../src/daemon.js';
import { createLogger } from '../../src/observability/logger.js';
import type { Container, ExecResult } from '../../src/schemas/container.js';
import type { DaemonInfo, Readiness } from '../../src/schemas/system.js';
import { issueToken } from '../../src/security/tokens.js';
import { CONMON_BINARY, eventually, makeSandbox, RUNTIME_BINARY, type Sandbox } from '../helpers/sandbox.js';
import { parsePrometheus, sampleValue } from '../helpers/prometheus.js';

interface LogLine {
  level: number;
  msg: string;
  reqId?: string;
  [key: string]: unknown;
}

/** A daemon in-process whose log lines are kept, parsed, for the test to read. */
async function startLogged(
  t: Test,
  sandbox: Sandbox,
  overrides: Partial<DaemonConfig> = {},
): Promise<{ daemon: Daemon; lines: LogLine[]; raw: string[] }> {
  const raw: string[] = [];
  const lines: LogLine[] = [];
  const logger = createLogger({
    level: 'info',
    destination: {
      write(chunk: string) {
        raw.push(chunk);
        lines.push(JSON.parse(chunk) as LogLine);
      },
    },
  });
  const daemon = await openDaemon({ ...sandbox.config, ...overrides }, logger);
  t.teardown(() => daemon.close());
  return { daemon, lines, raw };
}

async function call<T = Record<string, unknown>>(
  daemon: Daemon,
  method: string,
  url: string,
  options: { headers?: Record<string, string>; payload?: unknown } = {},
) {
  const response = await daemon.app.inject({
    method: method as 'GET',
    url,
    headers: options.headers,
    ...(options.payload === undefined ? {} : { payload: options.payload as object }),
  });
  const isJson = /json/.test(String(response.headers['content-type'] ?? ''));
  return {
    status: response.statusCode,
    headers: response.headers,
    text: response.body,
    body: (isJson && response.body ? JSON.parse(response.body) : undefined) as T,
  };
}

t.test('request ids round-trip and tag every line a request causes, lifecycle lines included', async (t) => {
  const sandbox = makeSandbox(t, 'reqid');
  const bundle = sandbox.bundle('sleeper');
  const { daemon, lines, raw } = await startLogged(t, sandbox);
  const secret = issueToken(daemon.tokens, 'observer', 'admin');
  const auth = { authorization: `Bearer ${secret}` };
  const id = sandbox.id('traced');

  const steps: Array<[string, string, string, unknown?]> = [
    ['trace-create', 'POST', '/containers'],
    ['trace-start', 'POST', `/containers/${id}/start`],
    ['trace-exec', 'POST', `/containers/${id}/exec`],
    ['trace-kill', 'POST', `/containers/${id}/kill?signal=SIGKILL`],
    ['trace-delete', 'DELETE', `/containers/${id}`],
  ];
  const payloads: Record<string, unknown> = {
    'trace-create': { id, bundle },
    'trace-exec': { args: ['echo', 'hi'] },
  };
  for (const [requestId, method, url] of steps) {
    const response = await call(daemon, method, url, {
      headers: { ...auth, 'x-request-id': requestId },
      payload: payloads[requestId],
    });
    t.ok(response.status < 300, `${method} ${url} succeeds (${response.status})`);
    t.equal(response.headers['x-request-id'], requestId, `${requestId} comes back in X-Request-Id`);
  }

  const linesOf = (requestId: string) => lines.filter((line) => line.reqId === requestId);
  const expectLine = (requestId: string, msg: string) =>
    t.ok(
      linesOf(requestId).some((line) => line.msg === msg),
      `"${msg}" (a lifecycle line) carries ${requestId}`,
    );
  expectLine('trace-create', 'container created');
  expectLine('trace-start', 'container started');
  expectLine('trace-kill', 'signal sent');
  expectLine('trace-delete', 'container deleted');
  for (const [requestId, method] of steps) {
    const completed = linesOf(requestId).find((line) => line.msg === 'request completed');
    t.ok(completed, `${requestId} has its request line`);
    t.equal(completed?.method, method);
    t.type(completed?.durationMs, 'number', 'with its duration');
    t.ok(
      linesOf(requestId).some((line) => line.msg === 'audit'),
      `${requestId}'s audit line carries its id`,
    );
  }
  const create = linesOf('trace-create').find((line) => line.msg === 'request completed');
  t.match(create, { route: '/containers', status: 201, url: '/containers' });
  const kill = linesOf('trace-kill').find((line) => line.msg === 'request completed');
  t.match(kill, { route: '/containers/:id/kill', status: 204 });

  // No line names two requests, and the token never reaches the log in any form.
  for (const line of raw) t.notOk(/"reqId":"[^"]*".*"reqId"/.test(line), 'one reqId per line');
  t.notOk(
    raw.some((line) => line.includes(secret)),
    'the bearer token appears nowhere in the log',
  );

  const generated = await call(daemon, 'GET', '/containers', { headers: auth });
  t.match(generated.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'without X-Request-Id, runcd makes a UUID');
  t.ok(
    lines.some(
      (line) => line.reqId === generated.headers['x-request-id'] && line.msg === 'request completed',
    ),
    'and logs under it',
  );
  const hostile = await call(daemon, 'GET', '/containers', {
    headers: { ...auth, 'x-request-id': `${'x'.repeat(200)}` },
  });
  t.not(hostile.headers['x-request-id'], 'x'.repeat(200), 'an oversized request id is replaced, not logged');
  const odd = await call(daemon, 'GET', '/containers', { headers: { ...auth, 'x-request-id': 'a b"c' } });
  t.match(odd.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'so is one with spaces or quotes');
});

t.test(
  'GET /metrics has the request, runtime, container, event and restart series after a lifecycle',
  async (t) => {
    const sandbox = makeSandbox(t, 'metrics');
    const bundle = sandbox.bundle('sleeper');
    const failing = sandbox.bundle('failing', ['sh', '-c', 'exit 3']);
    const { daemon } = await startLogged(t, sandbox);
    const id = sandbox.id('m');
    const flaky = sandbox.id('flaky');

    t.equal((await call(daemon, 'POST', '/containers', { payload: { id, bundle } })).status, 201);
    t.equal((await call(daemon, 'POST', `/containers/${id}/start`)).status, 200);
    const exec = await call<ExecResult>(daemon, 'POST', `/containers/${id}/exec`, {
      payload: { args: ['true'] },
    });
    t.equal(exec.body.exitCode, 0);
    // Reads come from runcd's own view; only a refresh asks runc (create no longer does either).
    t.equal((await call(daemon, 'GET', `/containers/${id}?refresh=true`)).status, 200);
    t.equal((await call(daemon, 'POST', `/containers/${id}/restart?timeout=0`)).status, 200);
    const running = parsePrometheus((await call(daemon, 'GET', '/metrics')).text);
    t.equal(sampleValue(running, 'runcd_containers', { status: 'running' }), 1, 'one running container');
    t.equal((await call(daemon, 'POST', `/containers/${id}/kill?signal=SIGKILL`)).status, 204);
    t.equal((await call(daemon, 'DELETE', `/containers/${id}`)).status, 204);
    t.equal(
      (
        await call(daemon, 'POST', '/containers', {
          payload: {
            id: flaky,
            bundle: failing,
            start: true,
            restartPolicy: { name: 'on-failure', maxRetries: 1 },
          },
        })
      ).status,
      201,
    );
    // Restarted once by its policy, then given up on (maxRetries 1): stopped for good.
    await eventually(async () => {
      const metrics = parsePrometheus((await call(daemon, 'GET', '/metrics')).text);
      const container = (await call<Container>(daemon, 'GET', `/containers/${flaky}`)).body;
      const restarted = sampleValue(metrics, 'runcd_restarts_total', { reason: 'policy' }) === 1;
      return restarted && container.status === 'stopped' ? true : undefined;
    }, 20_000);
    t.equal((await call(daemon, 'GET', `/containers/nope-${id}`)).status, 404);

    const response = await call(daemon, 'GET', '/metrics');
    t.equal(response.status, 200);
    t.match(response.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    const samples = parsePrometheus(response.text);

    const requests = (labels: Record<string, string>) =>
      sampleValue(samples, 'runcd_http_request_duration_seconds_count', labels);
    t.equal(
      requests({ method: 'POST', route: '/containers', status: '201' }),
      2,
      'creates, by route and status',
    );
    t.equal(requests({ method: 'POST', route: '/containers/:id/exec', status: '200' }), 1);
    t.equal(requests({ method: 'DELETE', route: '/containers/:id', status: '204' }), 1);
    t.equal(
      requests({ method: 'GET', route: '/containers/:id', status: '404' }),
      1,
      'errors by their status',
    );
    t.ok(
      samples.some(
        (sample) =>
          sample.name === 'runcd_http_request_duration_seconds_bucket' &&
          sample.labels.route === '/containers/:id/start' &&
          sample.labels.le === '+Inf',
      ),
      'request durations are histograms',
    );

    const runtime = (labels: Record<string, string>) =>
      sampleValue(samples, 'runcd_runtime_invocation_duration_seconds_count', labels) ?? 0;
    t.ok(runtime({ program: 'conmon', command: 'create', outcome: 'success' }) >= 2, 'conmon creates');
    for (const command of ['state', 'start', 'exec', 'kill', 'delete']) {
      t.ok(runtime({ program: 'runc', command, outcome: 'success' }) >= 1, `runc ${command} is timed`);
    }
    t.ok(
      samples.some(
        (sample) =>
          sample.name === 'runcd_runtime_invocation_duration_seconds_sum' && sample.labels.command === 'exec',
      ),
      'with their durations',
    );

    t.equal(sampleValue(samples, 'runcd_containers', { status: 'stopped' }), 1, 'the failing one, given up');
    t.equal(sampleValue(samples, 'runcd_containers', { status: 'running' }), 0);
    for (const type of ['create', 'start', 'exec', 'kill', 'die', 'delete', 'restart']) {
      t.ok(
        (sampleValue(samples, 'runcd_events_emitted_total', { type }) ?? 0) >= 1,
        `"${type}" events are counted`,
      );
    }
    t.equal(sampleValue(samples, 'runcd_events_emitted_total', { type: 'pause' }), 0, 'unseen types read 0');
    t.equal(sampleValue(samples, 'runcd_restarts_total', { reason: 'caller' }), 1, 'the caller restart');
    t.equal(sampleValue(samples, 'runcd_restarts_total', { reason: 'policy' }), 1, 'the policy restart');
    t.ok(sampleValue(samples, 'runcd_process_resident_memory_bytes', {}), 'process metrics too');
    const utilization = sampleValue(samples, 'runcd_nodejs_eventloop_utilization_ratio', {});
    t.ok(utilization !== undefined && utilization > 0 && utilization <= 1, 'event-loop utilization, 0-1');
    t.equal(
      sampleValue(samples, 'runcd_nodejs_eventloop_lag_p99_seconds', {}),
      undefined,
      'no histogram fed by a 10 ms timer',
    );
  },
);

t.test('GET /readyz is ready with each check, and names the check that fails', async (t) => {
  const sandbox = makeSandbox(t, 'ready');
  // A runtime that can disappear: a wrapper script around the real runc.
  const wrapper = join(sandbox.dir, 'runc-wrapper');
  writeFileSync(wrapper, `#!/bin/sh\nexec ${RUNTIME_BINARY} "$@"\n`);
  chmodSync(wrapper, 0o755);
  const { daemon } = await startLogged(t, sandbox, { runtimeBinary: wrapper });

  const ready = await call<Readiness>(daemon, 'GET', '/readyz');
  t.equal(ready.status, 200);
  t.match(ready.body, {
    status: 'ready',
    checks: {
      store: { ok: true, detail: /succeeded/ },
      runtime: { ok: true, detail: /^runc version \d/ },
      conmon: { ok: true, detail: /^conmon version \d/ },
    },
  });

  const { daemon: second } = await startLogged(t, makeSandbox(t, 'ready2'), { runtimeBinary: wrapper });
  rmSync(wrapper);
  const broken = await call<Readiness>(second, 'GET', '/readyz');
  t.equal(broken.status, 503, 'a runtime that no longer answers makes runcd not ready');
  t.match(broken.body, {
    status: 'not_ready',
    checks: { store: { ok: true }, runtime: { ok: false, detail: /runc-wrapper/ }, conmon: { ok: true } },
  });
  t.equal((await call(second, 'GET', '/healthz')).status, 200, 'while the process itself is still alive');
});

t.test('GET /info reports versions, kernel, cgroup version and counts', async (t) => {
  const sandbox = makeSandbox(t, 'info');
  const { daemon } = await startLogged(t, sandbox);
  const id = sandbox.id('counted');
  t.equal(
    (await call(daemon, 'POST', '/containers', { payload: { id, bundle: sandbox.bundle('b') } })).status,
    201,
  );
  const info = await call<DaemonInfo>(daemon, 'GET', '/info');
  t.equal(info.status, 200);
  const runcVersion = /runc version (\S+)/.exec(execFileSync(RUNTIME_BINARY, ['--version']).toString())?.[1];
  const conmonVersion = /conmon version (\S+)/.exec(
    execFileSync(CONMON_BINARY, ['--version']).toString(),
  )?.[1];
  t.equal(info.body.runtime.version, runcVersion, 'runc version, as runc --version says');
  t.equal(info.body.runtime.path, RUNTIME_BINARY);
  t.equal(info.body.conmon.version, conmonVersion);
  t.equal(info.body.host.kernel, release());
  // Decided independently of runcd's mountinfo reading: the files each hierarchy puts in place.
  const expectedCgroups = existsSync('/sys/fs/cgroup/cgroup.controllers')
    ? 'v2'
    : existsSync('/sys/fs/cgroup/unified/cgroup.controllers')
      ? 'hybrid'
      : 'v1';
  t.equal(info.body.host.cgroupVersion, expectedCgroups);
  t.match(info.body.runcd, { version: /^\d+\.\d+\.\d+/, node: process.version, pid: process.pid });
  t.same(info.body.containers, {
    total: 1,
    byStatus: { creating: 0, created: 1, running: 0, paused: 0, stopped: 0 },
  });
  t.equal(info.body.eventsEmitted, 1, 'the create event');
  t.equal(info.body.restarts, 0);
});

t.test(
  "the Docker API's requests are logged and measured as the native API's, under their own label",
  async (t) => {
    const sandbox = makeSandbox(t, 'dockerlog');
    const { daemon, lines } = await startLogged(t, sandbox, { docker: true });
    const docker = daemon.dockerApp!;
    const ping = await docker.inject({
      method: 'GET',
      url: '/_ping',
      headers: { 'x-request-id': 'docker-ping' },
    });
    t.equal(ping.statusCode, 200);
    const missing = await docker.inject({
      method: 'GET',
      url: '/v1.43/containers/no-such-container/json',
      headers: { 'x-request-id': 'docker-missing' },
    });
    t.equal(missing.statusCode, 404);
    const line = (requestId: string) =>
      lines.find((each) => each.reqId === requestId && each.msg === 'request completed');
    t.match(line('docker-ping'), { api: 'docker', method: 'GET', route: '/_ping', status: 200 });
    t.match(line('docker-missing'), {
      api: 'docker',
      route: '/containers/:id/json',
      url: '/v1.43/containers/no-such-container/json',
      status: 404,
    });
    t.type(line('docker-missing')?.durationMs, 'number', 'with its duration');
    const metrics = parsePrometheus(
      (
        await call(daemon, 'GET', '/metrics', {
          headers: { authorization: `Bearer ${issueToken(daemon.tokens, 'm', 'admin')}` },
        })
      ).text,
    );
    t.ok(
      sampleValue(metrics, 'runcd_http_request_duration_seconds_count', {
        method: 'GET',
        route: 'docker /containers/:id/json',
        status: '404',
      }) === 1,
      "the Docker route has its own series, apart from runcd's",
    );
  },
);
