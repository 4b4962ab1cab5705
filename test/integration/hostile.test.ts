import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import type { AuditRecord } from '../../src/security/audit-log.js';
import type { EditableSpec } from '../helpers/editable-spec.js';
import { rawRequest, type RawRequest } from '../helpers/raw-http.js';
import { makeSandbox, RUNTIME_BINARY, startInProcess } from '../helpers/sandbox.js';

/**
 * Hundreds of hostile requests over the real unix socket (no client library to normalize them), each answered
 * with the status and problem code it deserves, none with a 5xx, none spawning a runtime process, and the
 * daemon healthy and able to run containers afterwards.
 */

interface Case {
  name: string;
  request: RawRequest;
  status: number;
  code: string;
}

t.test('a barrage of hostile requests is refused cleanly and spawns nothing', async (t) => {
  const sandbox = makeSandbox(t, 'hostile');
  const shared = join(sandbox.dir, 'shared');
  mkdirSync(shared);
  const dockerSocket = join(shared, 'docker.sock');
  const fakeDocker = createServer();
  await new Promise<void>((resolve) => fakeDocker.listen(dockerSocket, resolve));
  t.teardown(() => new Promise<void>((resolve) => fakeDocker.close(() => resolve())));

  const daemon = await startInProcess(t, sandbox, { allowMountSources: [shared] });
  await daemon.app.listen({ path: sandbox.socket });
  const send = (request: RawRequest) => rawRequest(sandbox.socket, request);
  const json = { 'content-type': 'application/json' };

  const good = sandbox.bundle('good');
  const goodSpec = JSON.parse(readFileSync(join(good, 'config.json'), 'utf8')) as EditableSpec;
  /** A bundle with the good config edited; its rootfs is a copy so nothing but the edit differs. */
  const configBundle = (name: string, edit: (spec: EditableSpec) => void, raw?: string): string => {
    const dir = join(sandbox.bundleRoot, name);
    mkdirSync(dir);
    cpSync(join(good, 'rootfs'), join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
    const spec = structuredClone(goodSpec);
    edit(spec);
    writeFileSync(join(dir, 'config.json'), raw ?? JSON.stringify(spec));
    return dir;
  };

  // The one container the barrage aims at: created (not started), so exec and kill have a real target.
  const target = sandbox.id('target');
  const created = await send({
    method: 'POST',
    path: '/containers',
    headers: json,
    body: JSON.stringify({ id: target, bundle: good }),
  });
  t.equal(created.status, 201, 'the target container exists');

  const cases: Case[] = [];
  const add = (name: string, request: RawRequest, status: number, code: string) =>
    cases.push({ name, request, status, code });
  const create = (body: string, headers: Record<string, string> = json): RawRequest => ({
    method: 'POST',
    path: '/containers',
    headers,
    body,
  });
  const createWith = (bundle: string) => create(JSON.stringify({ id: sandbox.id('x'), bundle }));

  // Malformed JSON
  for (const body of [
    '{bad',
    '{"id":',
    '{"id": "x", "bundle": }',
    "{'id': 'x'}",
    '{"id":"a","bundle":"/x"} trailing',
    '\u0000',
    '{"a":1,}',
    'NaN',
    '{"id": "x" "bundle": "y"}',
    '[',
    '{"__proto__": {"admin": true}, "id": "x", "bundle": "/x"}',
    '{"constructor": {"prototype": {"admin": true}}}',
    '',
  ]) {
    add(`malformed JSON ${JSON.stringify(body)}`, create(body), 400, 'invalid_json');
    add(
      `malformed JSON to exec ${JSON.stringify(body)}`,
      { ...create(body), path: `/containers/${target}/exec` },
      400,
      'invalid_json',
    );
  }
  // Well-formed JSON of the wrong shape
  for (const [body, code] of [
    ['[]', 'invalid_body'],
    ['"string"', 'invalid_body'],
    ['42', 'invalid_body'],
    ['true', 'invalid_body'],
    ['{"id": "x"}', 'invalid_body'],
    ['{"bundle": "/x"}', 'invalid_container_id'],
  ]) {
    add(`wrong shape ${body}`, create(body!), 400, code!);
  }
  // Wrong content types
  for (const type of [
    'text/plain',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/xml',
    'text/html',
    'application/octet-stream',
    'application/jsonx',
    'application/json-seq',
    'image/png',
  ]) {
    for (const path of ['/containers', `/containers/${target}/exec`, `/containers/${target}/start`]) {
      add(
        `content type ${type} on ${path}`,
        { method: 'POST', path, headers: { 'content-type': type }, body: '{"id":"x"}' },
        415,
        'unsupported_media_type',
      );
    }
  }
  add(
    'a body without a content type',
    { method: 'POST', path: '/containers', body: '{"id":"x"}' },
    415,
    'unsupported_media_type',
  );
  // Oversize bodies
  const padding = (bytes: number) =>
    JSON.stringify({ id: 'x', bundle: good, labels: { pad: 'p'.repeat(bytes) } });
  add('300 KiB create', create(padding(300 * 1024)), 413, 'body_too_large');
  // Under the 256 KiB limit of create, the body is read and judged on its content.
  add(
    '100 KiB create',
    create(`{"id": "..", ${' '.repeat(100 * 1024)} "bundle": "/x"}`),
    400,
    'invalid_container_id',
  );
  add(
    '17 KiB exec',
    { ...create(JSON.stringify({ args: ['x'.repeat(17 * 1024)] })), path: `/containers/${target}/exec` },
    413,
    'body_too_large',
  );
  add(
    '17 KiB start',
    { ...create(JSON.stringify({ pad: 'x'.repeat(17 * 1024) })), path: `/containers/${target}/start` },
    413,
    'body_too_large',
  );
  add(
    '17 KiB kill',
    { ...create(JSON.stringify({ pad: 'x'.repeat(17 * 1024) })), path: `/containers/${target}/kill` },
    413,
    'body_too_large',
  );
  add(
    'a lying Content-Length',
    { ...create('{}'), headers: { ...json, 'content-length': '1000000000' } },
    413,
    'body_too_large',
  );

  // Hostile ids, on every route that takes one
  const badIds = [
    '..',
    '%2e%2e',
    '%2e%2e%2f',
    '%2E%2E%2F%2E%2E%2Fetc',
    '.',
    '%2e',
    '-rf',
    '--help',
    'x'.repeat(65),
    'x'.repeat(1024),
    'caf%C3%A9',
    'a%00b',
    '%00',
    'a%20b',
    '%0a',
    '%3Brm%20-rf%20%2F',
    '%24(reboot)',
    '%60id%60',
    '..%2f..%2fetc%2fpasswd',
    '%252e%252e',
    '%E2%80%AEabc',
    '%F0%9F%92%A9',
    '.hidden',
    'a%2Fb',
    '%2f',
  ];
  for (const id of badIds) {
    const label = id.length > 40 ? `${id.length} characters` : id;
    add(`id ${label}: state`, { path: `/containers/${id}` }, 400, 'invalid_container_id');
    add(
      `id ${label}: start`,
      { method: 'POST', path: `/containers/${id}/start` },
      400,
      'invalid_container_id',
    );
    add(
      `id ${label}: kill`,
      { method: 'POST', path: `/containers/${id}/kill?signal=KILL` },
      400,
      'invalid_container_id',
    );
    add(
      `id ${label}: delete`,
      { method: 'DELETE', path: `/containers/${id}?force=true` },
      400,
      'invalid_container_id',
    );
    add(
      `id ${label}: exec`,
      { ...create('{"args":["id"]}'), path: `/containers/${id}/exec` },
      400,
      'invalid_container_id',
    );
    for (const action of ['stop', 'restart', 'pause', 'resume', 'wait']) {
      add(
        `id ${label}: ${action}`,
        { method: 'POST', path: `/containers/${id}/${action}` },
        400,
        'invalid_container_id',
      );
    }
    for (const view of ['logs', 'processes', 'stats']) {
      add(`id ${label}: ${view}`, { path: `/containers/${id}/${view}` }, 400, 'invalid_container_id');
    }
  }
  for (const id of [
    '..',
    'a/b',
    '-rf',
    '%2e%2e%2f',
    'x'.repeat(1024),
    'a\u0000b',
    'café',
    '',
    ' ',
    'a b',
    123,
    null,
  ]) {
    add(
      `create with id ${JSON.stringify(id).slice(0, 40)}`,
      create(JSON.stringify({ id, bundle: good })),
      400,
      'invalid_container_id',
    );
  }
  add('a slash in the path instead of an id', { path: '/containers/a/b' }, 404, 'route_not_found');
  add('dot segments out of the API', { path: '/containers/../../etc/passwd' }, 404, 'route_not_found');

  // Signals
  for (const signal of [
    '0',
    '-9',
    '999',
    'SIG42',
    'KILLX',
    '',
    'SIGKILL%3Brm',
    '65',
    '32',
    'sigkil',
    '9.5',
    '0x9',
    'SIG',
    '%00',
    '-1',
    '1e1',
    'KILL%20KILL',
    'SIGRTMIN',
  ]) {
    add(
      `signal ${JSON.stringify(signal)}`,
      { method: 'POST', path: `/containers/${target}/kill?signal=${signal}` },
      400,
      'invalid_signal',
    );
  }
  add(
    'two signals at once',
    { method: 'POST', path: `/containers/${target}/kill?signal=9&signal=15` },
    400,
    'invalid_signal',
  );

  // Bundles
  const linkedBundle = join(sandbox.bundleRoot, 'linked');
  symlinkSync(good, linkedBundle);
  mkdirSync(join(sandbox.bundleRoot, 'real-parent'));
  cpSync(good, join(sandbox.bundleRoot, 'real-parent', 'b'), { recursive: true, verbatimSymlinks: true });
  symlinkSync(join(sandbox.bundleRoot, 'real-parent'), join(sandbox.bundleRoot, 'link-parent'));
  const bundles: Array<[string, string, number, string]> = [
    ['/', '/', 400, 'bundle_outside_roots'],
    ['/etc', '/etc', 400, 'bundle_outside_roots'],
    ['/tmp', '/tmp', 400, 'bundle_outside_roots'],
    ['/proc/self/root', '/proc/self/root', 400, 'bundle_outside_roots'],
    ['../x', '../x', 400, 'bundle_path_relative'],
    ['relative', 'bundles/good', 400, 'bundle_path_relative'],
    ['escape with ..', `${sandbox.bundleRoot}/../state`, 400, 'bundle_outside_roots'],
    ['the bundle root itself', sandbox.bundleRoot, 400, 'bundle_is_root'],
    ['through a symlink', linkedBundle, 400, 'bundle_through_symlink'],
    [
      'through a symlinked parent',
      join(sandbox.bundleRoot, 'link-parent', 'b'),
      400,
      'bundle_through_symlink',
    ],
    ['missing', join(sandbox.bundleRoot, 'nope'), 400, 'bundle_not_found'],
    ['a file', join(good, 'config.json'), 400, 'bundle_not_directory'],
    ['a NUL byte', `${good}\u0000`, 400, 'bundle_not_found'],
    ['empty', '', 400, 'invalid_body'],
    ['5000 characters', '/' + 'b'.repeat(4999), 400, 'invalid_body'],
  ];
  for (const [name, bundle, status, code] of bundles) add(`bundle ${name}`, createWith(bundle), status, code);

  // Configs the policy refuses, and configs that are not configs
  const namespaces = (spec: EditableSpec, drop: string) =>
    (spec.linux.namespaces = spec.linux.namespaces.filter((ns) => ns.type !== drop));
  const configs: Array<[string, (spec: EditableSpec) => void, number, string, string?]> = [
    [
      'a prestart hook',
      (s) => (s.hooks = { prestart: [{ path: '/bin/sh', args: ['sh', '-c', 'id > /tmp/pwned'] }] }),
      403,
      'policy_hooks',
    ],
    ['a poststop hook', (s) => (s.hooks = { poststop: [{ path: '/bin/true' }] }), 403, 'policy_hooks'],
    [
      'a hook spelled "Hooks"',
      (s) => (s.Hooks = { prestart: [{ path: '/bin/true' }] }),
      400,
      'bundle_invalid_config',
    ],
    [
      'a mount of /',
      (s) => s.mounts.push({ destination: '/host', type: 'bind', source: '/', options: ['rbind'] }),
      403,
      'policy_mount_source',
    ],
    [
      'a mount of a docker socket',
      (s) => s.mounts.push({ destination: '/var/run/docker.sock', type: 'bind', source: dockerSocket }),
      403,
      'policy_mount_source',
    ],
    [
      'a mount of /var/run/docker.sock',
      (s) => s.mounts.push({ destination: '/d.sock', source: '/var/run/docker.sock', options: ['bind'] }),
      403,
      'policy_mount_source',
    ],
    [
      'a mount of /etc',
      (s) => s.mounts.push({ destination: '/etc2', type: 'bind', source: '/etc' }),
      403,
      'policy_mount_source',
    ],
    [
      'a mount of /proc/1/root',
      (s) => s.mounts.push({ destination: '/r', type: 'bind', source: '/proc/1/root' }),
      403,
      'policy_mount_source',
    ],
    [
      "a mount of runcd's state",
      (s) => s.mounts.push({ destination: '/s', type: 'bind', source: sandbox.stateDir }),
      403,
      'policy_mount_source',
    ],
    [
      'an overlay of host dirs',
      (s) =>
        s.mounts.push({ destination: '/o', type: 'overlay', source: 'overlay', options: ['lowerdir=/etc'] }),
      403,
      'policy_mount_type',
    ],
    [
      'a second procfs',
      (s) => s.mounts.push({ destination: '/mnt', type: 'proc', source: 'proc' }),
      403,
      'policy_mount_type',
    ],
    ['a dropped pid namespace', (s) => namespaces(s, 'pid'), 403, 'policy_namespace'],
    ['a dropped network namespace', (s) => namespaces(s, 'network'), 403, 'policy_namespace'],
    ['a dropped mount namespace', (s) => namespaces(s, 'mount'), 403, 'policy_namespace'],
    [
      "joining the host's network namespace",
      (s) => (s.linux.namespaces[1] = { type: 'network', path: '/proc/1/ns/net' }),
      403,
      'policy_namespace',
    ],
    ['CAP_SYS_ADMIN', (s) => s.process.capabilities.bounding.push('CAP_SYS_ADMIN'), 403, 'policy_capability'],
    [
      'CAP_SYS_MODULE',
      (s) => s.process.capabilities.effective.push('CAP_SYS_MODULE'),
      403,
      'policy_capability',
    ],
    ['cwd /proc/self/fd/7', (s) => (s.process.cwd = '/proc/self/fd/7'), 403, 'policy_cwd'],
    ['a relative cwd', (s) => (s.process.cwd = 'tmp'), 403, 'policy_cwd'],
    [
      'rwm on every device',
      (s) => s.linux.resources.devices.push({ allow: true, access: 'rwm' }),
      403,
      'policy_devices',
    ],
    ['noNewPrivileges false', (s) => (s.process.noNewPrivileges = false), 403, 'policy_no_new_privileges'],
    ['a host cgroup', (s) => (s.linux.cgroupsPath = '/system.slice'), 403, 'policy_cgroups_path'],
    ['an absolute root.path', (s) => (s.root.path = '/'), 403, 'policy_root_path'],
    ['a root.path escaping the bundle', (s) => (s.root.path = '../../..'), 403, 'policy_root_path'],
    [
      'mounts that are not a list',
      (s) => ((s as Record<string, unknown>).mounts = { '/x': '/etc' }),
      400,
      'bundle_invalid_config',
    ],
    ['no process', (s) => delete (s as Record<string, unknown>).process, 400, 'bundle_invalid_config'],
    ['not JSON', () => undefined, 400, 'bundle_invalid_config', '{"ociVersion": '],
    ['a JSON array', () => undefined, 400, 'bundle_invalid_config', '[]'],
    [
      '2 MiB of config',
      () => undefined,
      400,
      'bundle_invalid_config',
      JSON.stringify({ pad: 'x'.repeat(2 * 1024 * 1024) }),
    ],
  ];
  for (const [index, [name, editSpec, status, code, raw]] of configs.entries()) {
    add(`config with ${name}`, createWith(configBundle(`config-${index}`, editSpec, raw)), status, code);
  }
  const symlinkedRoot = configBundle('rootfs-link', (s) => (s.root.path = 'link'));
  symlinkSync('rootfs', join(symlinkedRoot, 'link'));
  add('config with a root.path through a symlink', createWith(symlinkedRoot), 403, 'policy_root_path');
  const passwdConfig = configBundle('config-link', () => undefined);
  execFileSync('ln', ['-sf', '/etc/passwd', join(passwdConfig, 'config.json')]);
  add('config.json as a symlink to /etc/passwd', createWith(passwdConfig), 400, 'bundle_invalid_config');
  const fifoConfig = configBundle('config-fifo', () => undefined);
  execFileSync('sh', ['-c', `rm "$1" && mkfifo "$1"`, 'sh', join(fifoConfig, 'config.json')]);
  add('config.json as a FIFO', createWith(fifoConfig), 400, 'bundle_invalid_config');

  // exec bodies
  const exec = (body: unknown) => ({ ...create(JSON.stringify(body)), path: `/containers/${target}/exec` });
  add('exec with cwd /proc/self/fd/7', exec({ args: ['ls'], cwd: '/proc/self/fd/7' }), 403, 'policy_cwd');
  add('exec with cwd /sys/kernel', exec({ args: ['ls'], cwd: '/sys/kernel' }), 403, 'policy_cwd');
  add('exec with cwd /dev/../proc/1', exec({ args: ['ls'], cwd: '/dev/../proc/1' }), 403, 'policy_cwd');
  add('exec with a relative cwd', exec({ args: ['ls'], cwd: 'tmp' }), 400, 'invalid_body');
  add('exec without args', exec({ args: [] }), 400, 'invalid_body');
  add('exec with env without =', exec({ args: ['env'], env: ['NOEQUALS'] }), 400, 'invalid_body');
  add('exec as user "root"', exec({ args: ['id'], user: 'root' }), 400, 'invalid_body');
  add('exec with a negative timeout', exec({ args: ['id'], timeoutSeconds: -1 }), 400, 'invalid_body');
  add('exec with an unknown field', exec({ args: ['id'], privileged: true }), 400, 'invalid_body');

  // Bodies with fields runcd does not have or values it does not take
  const body = (extra: Record<string, unknown>) =>
    create(JSON.stringify({ id: sandbox.id('x'), bundle: good, ...extra }));
  add('create with privileged: true', body({ privileged: true }), 400, 'invalid_body');
  add('create with a list as bundle', body({ bundle: ['/etc'] }), 400, 'invalid_body');
  add('create with a bad label key', body({ labels: { '../x': 'y' } }), 400, 'invalid_body');
  add('create with a 5000-character label', body({ labels: { k: 'v'.repeat(5000) } }), 400, 'invalid_body');
  add(
    'create with 65 labels',
    body({ labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }),
    400,
    'invalid_body',
  );
  add('create with start: "yes"', body({ start: 'yes' }), 400, 'invalid_body');

  // Routes, methods and queries that do not exist
  add('PUT /containers', { method: 'PUT', path: '/containers' }, 405, 'method_not_allowed');
  add('PATCH a container', { method: 'PATCH', path: `/containers/${target}` }, 405, 'method_not_allowed');
  add('OPTIONS /containers', { method: 'OPTIONS', path: '/containers' }, 405, 'method_not_allowed');
  add('TRACE /', { method: 'TRACE', path: '/' }, 404, 'route_not_found');
  add('GET /admin', { path: '/admin' }, 404, 'route_not_found');
  add('an unknown action', { method: 'POST', path: `/containers/${target}/escape` }, 404, 'route_not_found');
  add('DELETE without an id', { method: 'DELETE', path: '/containers' }, 405, 'method_not_allowed');
  add('force=maybe', { method: 'DELETE', path: `/containers/${target}?force=maybe` }, 400, 'invalid_query');
  add('status=sleeping', { path: '/containers?status=sleeping' }, 400, 'invalid_query');
  add('label=novalue', { path: '/containers?label=novalue' }, 400, 'invalid_query');
  add('a bad percent escape', { path: '/containers/%zz' }, 400, 'invalid_url');

  // Not HTTP at all
  const raw = (text: string | Buffer) => ({ path: '', raw: Buffer.from(text) });
  add(
    'a NUL in the request line',
    raw('GET /containers/a\u0000b HTTP/1.1\r\nhost: x\r\n\r\n'),
    400,
    'malformed_request',
  );
  add(
    'a raw non-ASCII byte in the path',
    raw(
      Buffer.concat([
        Buffer.from('GET /containers/caf'),
        Buffer.from([0xc3, 0xa9]),
        Buffer.from(' HTTP/1.1\r\nhost: x\r\n\r\n'),
      ]),
    ),
    400,
    'malformed_request',
  );
  add(
    'a space in the path',
    raw('GET /containers/a b HTTP/1.1\r\nhost: x\r\n\r\n'),
    400,
    'malformed_request',
  );
  add(
    '20 KiB of headers',
    raw(`GET /containers HTTP/1.1\r\nhost: x\r\nx-pad: ${'p'.repeat(20 * 1024)}\r\n\r\n`),
    431,
    'malformed_request',
  );
  add('garbage', raw('GARBAGE\r\n\r\n'), 400, 'malformed_request');
  add(
    'smuggling: Content-Length and chunked',
    raw(
      'POST /containers HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n',
    ),
    400,
    'malformed_request',
  );

  // Credentials that are wrong even where none are needed
  for (const header of ['Bearer wrong', 'Basic cm9vdDpyb290', 'Bearer ', 'Bearer rcd_' + 'A'.repeat(43)]) {
    add(
      `Authorization: ${header}`,
      { path: '/containers', headers: { authorization: header } },
      401,
      'invalid_token',
    );
  }

  t.ok(cases.length >= 200, `${cases.length} hostile requests`);
  const spawnsBefore = daemon.runner.spawnCount;
  let serverErrors = 0;
  for (const hostile of cases) {
    const response = await send(hostile.request);
    if (response.status >= 500) serverErrors++;
    t.equal(response.status, hostile.status, `${hostile.name}: status`);
    t.equal(
      response.problem?.code,
      hostile.code,
      `${hostile.name}: code (${response.problem?.detail ?? response.text.slice(0, 120)})`,
    );
    t.match(response.headers['content-type'], /^application\/problem\+json/, `${hostile.name}: problem+json`);
  }
  t.equal(serverErrors, 0, 'no 5xx');
  t.equal(daemon.runner.spawnCount, spawnsBefore, 'not one runtime process was spawned');

  const health = await send({ path: '/healthz' });
  t.equal(health.status, 200, 'the daemon is healthy');
  const state = await send({ path: `/containers/${target}` });
  t.match(JSON.parse(state.text), { id: target, status: 'created' }, 'the target is untouched');
  const runcIds = (
    JSON.parse(
      execFileSync(RUNTIME_BINARY, [
        `--root=${sandbox.runtimeRoot}`,
        'list',
        '--format',
        'json',
      ]).toString() || '[]',
    ) as Array<{ id: string }>
  ).map((entry) => entry.id);
  t.same(runcIds, [target], 'runc knows only the target');
  t.same(readdirSync(join(sandbox.stateDir, 'containers')), [target], 'no half-created container left files');

  const audit = readFileSync(daemon.auditLogPath, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as AuditRecord);
  const refusedMutations = audit.filter((record) => record.outcome !== 'ok');
  t.ok(refusedMutations.length > 150, `${refusedMutations.length} refused requests audited`);
  t.ok(
    refusedMutations.every((record) => record.runtime.length === 0),
    'no audit record of a refused request names a runtime process',
  );

  // And it still does its job.
  const id = sandbox.id('after');
  const run = await send(create(JSON.stringify({ id, bundle: good, start: true })));
  t.equal(run.status, 201);
  t.equal((await send({ method: 'DELETE', path: `/containers/${id}?force=true` })).status, 204);
});
