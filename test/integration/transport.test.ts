import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Agent, request } from 'undici';
import type { AuditRecord } from '../../src/security/audit-log.js';
import { freePort, TestPki } from '../helpers/pki.js';
import { DaemonProcess, makeSandbox, REPO_ROOT, RUNTIME_BINARY, type Sandbox } from '../helpers/sandbox.js';

/** The real daemon process: its listeners, its TLS, its token CLI and what its runtime processes inherit. */

const RUNCD = join(REPO_ROOT, 'bin', 'runcd.js');

function runcd(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [RUNCD, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function baseArgs(sandbox: Sandbox): string[] {
  return [
    '--state-dir',
    sandbox.stateDir,
    '--runtime-root',
    sandbox.runtimeRoot,
    '--bundle-root',
    sandbox.bundleRoot,
  ];
}

function audit(sandbox: Sandbox): AuditRecord[] {
  const text = readFileSync(join(sandbox.stateDir, 'audit.log'), 'utf8').trim();
  return text ? text.split('\n').map((line) => JSON.parse(line) as AuditRecord) : [];
}

t.test('TCP on a non-loopback address without TLS refuses to start, and says why', async (t) => {
  const sandbox = makeSandbox(t, 'notls');
  const result = runcd([...baseArgs(sandbox), '--socket', sandbox.socket, '--tcp', '0.0.0.0:7070']);
  t.equal(result.status, 2);
  t.match(
    result.stderr,
    /refusing --tcp 0\.0\.0\.0:7070 without TLS: anyone who can reach that address could read the bearer tokens/,
  );
  t.notOk(readdirSync(sandbox.dir).includes('runcd.sock'), 'it never listened');
});

t.test('a socket directory others can write to refuses to start', async (t) => {
  const sandbox = makeSandbox(t, 'sockdir');
  const open = join(sandbox.dir, 'open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  const result = runcd([...baseArgs(sandbox), '--socket', join(open, 'runcd.sock')]);
  t.equal(result.status, 2);
  t.match(
    result.stderr,
    /directory .*open has mode 0777, writable by group or others, who could replace the socket/,
  );
});

t.test('the token CLI: printed once, listed by name, revocable', async (t) => {
  const sandbox = makeSandbox(t, 'cli');
  const state = ['--state-dir', sandbox.stateDir];
  const created = runcd(['token', 'create', '--name', 'ci', '--scope', 'read', ...state]);
  t.equal(created.status, 0);
  t.match(created.stdout, /^rcd_[A-Za-z0-9_-]{43}\n$/, 'stdout is the secret alone, for $(...)');
  t.match(created.stderr, /shown only this once/);
  t.equal(
    runcd(['token', 'create', '--name', 'ci', '--scope', 'admin', ...state]).status,
    1,
    'names are unique',
  );
  t.equal(runcd(['token', 'create', '--name', 'x', '--scope', 'root', ...state]).status, 2);
  t.equal(runcd(['token', 'create', '--scope', 'read', ...state]).status, 2);
  t.equal(runcd(['token', 'frobnicate', ...state]).status, 2);
  const env = spawnSync(process.execPath, [RUNCD, 'token', 'list'], {
    encoding: 'utf8',
    env: { ...process.env, RUNCD_STATE_DIR: sandbox.stateDir },
  });
  t.match(env.stdout, /^ci\tread\t\d{4}-/, 'RUNCD_STATE_DIR is honoured');
  t.notOk(env.stdout.includes(created.stdout.trim()), 'list never shows a secret');
  const db = readFileSync(join(sandbox.stateDir, 'runcd.db'));
  t.notOk(db.includes(created.stdout.trim()), 'the database holds no secret');
  t.equal(runcd(['token', 'revoke', 'ci', ...state]).status, 0);
  t.equal(runcd(['token', 'list', ...state]).stdout, '');
  t.equal(runcd(['token', 'revoke', 'ci', ...state]).status, 1);
});

t.test(
  'unix socket 0660 with its group; plain TCP on loopback needs a token and refuses browsers',
  async (t) => {
    const sandbox = makeSandbox(t, 'tcp');
    const port = await freePort();
    // A runtime that writes down what it was given, then is runc.
    const probeDir = join(sandbox.dir, 'probe');
    mkdirSync(probeDir);
    const probe = join(sandbox.dir, 'runc-probe');
    writeFileSync(
      probe,
      [
        '#!/bin/sh',
        `log=${probeDir}/$$`,
        // Redirecting a subshell leaves this shell's own table alone (dash would otherwise park stdout on fd
        // 11), so the listing is of its descriptors as received, plus fd 10: dash's open script.
        '(ls -l /proc/$$/fd) > "$log.fds"',
        'cat /proc/$$/environ > "$log.env"',
        'cat /proc/$PPID/comm > "$log.parent"',
        'echo "$*" > "$log.argv"',
        `exec ${RUNTIME_BINARY} "$@"`,
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const secret = runcd([
      'token',
      'create',
      '--name',
      'local',
      '--scope',
      'admin',
      '--state-dir',
      sandbox.stateDir,
    ]).stdout.trim();
    const daemon = new DaemonProcess(
      sandbox,
      ['--tcp', `127.0.0.1:${port}`, '--socket-group', 'daemon', '--runtime', probe],
      true,
    );
    t.teardown(() => daemon.close());
    await daemon.start();

    const socket = statSync(sandbox.socket);
    t.equal(socket.mode & 0o777, 0o660, 'socket mode 0660');
    t.equal(socket.uid, 0, 'owned by root');
    t.equal(socket.gid, 1, 'group "daemon", as --socket-group said');

    const tcp = (path: string, headers: Record<string, string> = {}) =>
      request(`http://127.0.0.1:${port}${path}`, { headers }).then(async (response) => ({
        status: response.statusCode,
        body: (await response.body.json()) as { code?: string },
      }));
    t.match(await tcp('/containers'), { status: 401, body: { code: 'token_required' } });
    t.match(await tcp('/containers', { authorization: `Bearer ${secret}` }), { status: 200 });
    t.match(await tcp('/containers', { authorization: `Bearer ${secret}`, origin: 'https://evil.example' }), {
      status: 403,
      body: { code: 'origin_forbidden' },
    });
    t.match(await tcp('/healthz'), { status: 200 });
    // A method the probe paths lack is a 405 for anyone, as their GET needs no token; elsewhere, still a 401.
    for (const [path, status] of [
      ['/healthz', 405],
      ['/readyz', 405],
      ['/containers', 401],
    ] as const) {
      const answer = await request(`http://127.0.0.1:${port}${path}`, { method: 'DELETE' });
      await answer.body.dump();
      t.equal(answer.statusCode, status, `DELETE ${path} on TCP without a token`);
    }
    const unix = await daemon.request('GET', '/containers');
    t.equal(unix.status, 200, 'the unix socket does not require a token without --require-token');
    t.equal(
      (await daemon.request('GET', '/containers', undefined, { origin: 'x' })).status,
      200,
      'no browser there',
    );

    // Runtime processes get stdio and PATH, nothing the daemon inherited or carries.
    const id = sandbox.id('c');
    t.equal((await daemon.request('POST', '/containers', { id, bundle: sandbox.bundle('b') })).status, 201);
    t.equal((await daemon.request('DELETE', `/containers/${id}?force=true`)).status, 204);
    const invocations = readdirSync(probeDir)
      .filter((name) => name.endsWith('.parent'))
      .map((name) => name.slice(0, -'.parent'.length))
      // The parent is runcd's spawn helper: the compiled one (its comm truncated to 15 characters) or the Node one.
      .filter((pid) =>
        ['runcd-spawn-hel', 'node'].includes(readFileSync(join(probeDir, `${pid}.parent`), 'utf8').trim()),
      );
    t.ok(invocations.length >= 3, `${invocations.length} runtime calls made by runcd itself`);
    for (const pid of invocations) {
      const argv = readFileSync(join(probeDir, `${pid}.argv`), 'utf8').trim();
      const fds = readFileSync(join(probeDir, `${pid}.fds`), 'utf8')
        .split('\n')
        .map((line) => /\s(\d+) -> (.*)$/.exec(line))
        .filter((match): match is RegExpExecArray => match !== null)
        .filter(([, , target]) => target !== probe) // the shell's own open script
        .map(([, fd]) => Number(fd));
      t.same(fds.sort(), [0, 1, 2], `only stdio for: ${argv}`);
      const env = readFileSync(join(probeDir, `${pid}.env`), 'utf8')
        .split('\0')
        // tap's process tracker injects these into every child of a test process, the daemon included.
        .filter((entry) => entry !== '' && !/^(NODE_OPTIONS|_TAPJS_[A-Z_]+)=/.test(entry));
      t.same(
        env,
        ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        `clean env for: ${argv}`,
      );
    }
    t.notOk(daemon.output.includes(secret), 'the daemon log never shows a secret');
    const tcpRecords = audit(sandbox).filter((record) => record.transport === 'tcp');
    t.ok(
      tcpRecords.some((r) => r.code === 'origin_forbidden' && r.token === null),
      'the browser refusal is audited',
    );
    t.ok(
      tcpRecords.every((r) => r.peer.startsWith('tcp:127.0.0.1:')),
      'with the TCP peer',
    );
  },
);

t.test(
  'mutual TLS: no client certificate, no connection; the right one and a token, an answer',
  async (t) => {
    const sandbox = makeSandbox(t, 'mtls');
    const pki = join(sandbox.dir, 'pki');
    mkdirSync(pki);
    const issuer = new TestPki(pki);
    const ca = (name: string) => issuer.ca(name);
    const cert = (name: string, by: string, extensions: string) => issuer.cert(name, by, extensions);
    ca('test-ca');
    ca('other-ca');
    cert('server', 'test-ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    cert('ci-client', 'test-ca', 'extendedKeyUsage=clientAuth\n');
    cert('intruder', 'other-ca', 'extendedKeyUsage=clientAuth\n');
    const file = (name: string) => readFileSync(join(pki, name));

    const port = await freePort();
    const secret = runcd([
      'token',
      'create',
      '--name',
      'ci',
      '--scope',
      'read',
      '--state-dir',
      sandbox.stateDir,
    ]).stdout.trim();
    const daemon = new DaemonProcess(sandbox, [
      '--tcp',
      `127.0.0.1:${port}`,
      '--tls-cert',
      join(pki, 'server.pem'),
      '--tls-key',
      join(pki, 'server.key'),
      '--tls-client-ca',
      join(pki, 'test-ca.pem'),
    ]);
    t.teardown(() => daemon.close());
    await daemon.start();

    const client = (certName?: string) =>
      new Agent({
        connect: {
          ca: file('test-ca.pem'),
          ...(certName ? { cert: file(`${certName}.pem`), key: file(`${certName}.key`) } : {}),
        },
      });
    const get = async (agent: Agent, headers: Record<string, string> = {}) => {
      try {
        const response = await request(`https://127.0.0.1:${port}/containers`, {
          dispatcher: agent,
          headers,
        });
        return { status: response.statusCode, body: (await response.body.json()) as { code?: string } };
      } finally {
        await agent.close();
      }
    };
    const authorized = { authorization: `Bearer ${secret}` };
    t.match(await get(client('ci-client'), authorized), { status: 200 }, 'client certificate and token: 200');
    t.match(
      await get(client('ci-client')),
      { status: 401, body: { code: 'token_required' } },
      'a certificate is not a token',
    );
    await t.rejects(get(client(), authorized), 'no client certificate: the handshake fails');
    await t.rejects(
      get(client('intruder'), authorized),
      'a certificate from another CA: the handshake fails',
    );
    const plain = await new Promise<string>((resolve) =>
      execFile(
        'curl',
        ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${port}/healthz`],
        (_error, stdout) => resolve(stdout),
      ),
    );
    t.not(plain, '200', 'plain HTTP gets no answer from the TLS port');
    const records = audit(sandbox).filter((record) => record.transport === 'tcp');
    t.ok(
      records.some((r) => r.status === 401 && /^tcp:127\.0\.0\.1:\d+ cert CN=ci-client$/.test(r.peer)),
      'the audit names the client certificate',
    );
  },
);
