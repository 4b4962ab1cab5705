import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { issueToken } from '../../src/security/tokens.js';
import { openDatabase } from '../../src/store/database.js';
import { TokenRepository } from '../../src/store/token-repository.js';
import { cleanRuncRoot, run, RUNCCTL, runcctl, runcOn, startDaemon } from '../helpers/cli.js';
import { freePort, TestPki } from '../helpers/pki.js';
import { eventually, makeSandbox } from '../helpers/sandbox.js';

t.test('run, stop, wait, logs and events', async (t) => {
  const sandbox = makeSandbox(t, 'ctl2');
  const talker = sandbox.bundle('talker', ['sh', '-c', 'echo out; echo err >&2; exit 5']);
  const sleeper = sandbox.bundle('sleeper');
  const runcRoot = join(sandbox.dir, 'runc-cli');
  mkdirSync(runcRoot);
  t.teardown(() => cleanRuncRoot(runcRoot));
  await startDaemon(t, sandbox);
  const started = Math.floor(Date.now() / 1000);

  // run in the foreground: the container's output, its exit code, and it is gone afterwards, as with runc run.
  const viaRunc = await runcOn(runcRoot)(['run', 'talk'], { cwd: talker });
  const viaCtl = await runcctl(sandbox, ['run', sandbox.id('talk')], { cwd: talker });
  t.equal(viaRunc.code, 5, 'runc run exits with the container status');
  t.equal(viaCtl.code, 5, 'so does runcctl run');
  t.equal(viaCtl.stdout, 'out\n', "the container's stdout on stdout");
  t.equal(viaCtl.stderr, 'err\n', 'and its stderr on stderr');
  t.equal((await runcctl(sandbox, ['state', sandbox.id('talk')])).code, 1, 'removed after it exited');

  // run --detach, then the supervision commands.
  const id = sandbox.id('web');
  t.equal((await runcctl(sandbox, ['run', '--detach', '--bundle', sleeper, id])).code, 0);
  const waiting = runcctl(sandbox, ['wait', id]);
  const stop = await runcctl(sandbox, ['stop', '--time', '1', id]);
  t.equal(stop.code, 0, 'stop (busybox ignores SIGTERM, so SIGKILL after 1 s)');
  t.same(await waiting, { code: 0, stdout: '137\n', stderr: '' }, 'wait prints the exit code');
  t.match(JSON.parse((await runcctl(sandbox, ['state', id])).stdout), { status: 'stopped', exitCode: 137 });

  const logged = sandbox.id('logged');
  t.equal((await runcctl(sandbox, ['run', '-d', '--bundle', talker, logged])).code, 0);
  const follow = await runcctl(sandbox, ['logs', '--follow', logged]);
  t.same(follow, { code: 0, stdout: 'out\n', stderr: 'err\n' }, 'logs -f streams until the container stops');
  t.match(
    (await runcctl(sandbox, ['logs', '--timestamps', '--tail', '1', logged])).stderr,
    /^\d{4}-\d\d-\d\dT\S+ err\n$/,
  );

  const history = await runcctl(sandbox, [
    'events',
    '--since',
    String(started),
    '--until',
    String(Math.ceil(Date.now() / 1000) + 1),
    id,
  ]);
  t.equal(history.code, 0);
  const types = history.stdout
    .trim()
    .split('\n')
    .map((line) => (JSON.parse(line) as { type: string; id: string }).type);
  t.same(types, ['create', 'start', 'die', 'stop'], "the container's events, in order");

  // Live events: a subscriber started first sees a container made afterwards.
  const live = spawn(process.execPath, [
    RUNCCTL,
    '--host',
    `unix://${sandbox.socket}`,
    'events',
    '--type',
    'create',
  ]);
  t.teardown(() => live.kill());
  let liveOutput = '';
  live.stdout.on('data', (chunk: Buffer) => (liveOutput += chunk.toString()));
  // When the subscription is in place cannot be seen from outside: create containers until one shows up.
  await eventually(async () => {
    const created = await runcctl(sandbox, ['create', '--bundle', sleeper, sandbox.id(`late-${Date.now()}`)]);
    if (created.code !== 0) throw new Error(created.stderr);
    return liveOutput.includes('"type":"create"') ? true : undefined;
  }, 15_000);
  t.pass('events streams live ones');

  const missing = await runcctl(sandbox, ['logs', 'nope']);
  t.same(missing, { code: 1, stdout: '', stderr: 'runcctl: container "nope" does not exist\n' });
});

t.test('over TCP and mutual TLS, with a token from --token or RUNCD_TOKEN', async (t) => {
  const sandbox = makeSandbox(t, 'ctltls');
  const pki = new TestPki(join(sandbox.dir, 'pki'));
  mkdirSync(pki.dir);
  pki.ca('ca');
  pki.cert('server', 'ca', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  pki.cert('client', 'ca', 'extendedKeyUsage=clientAuth\n');
  const db = openDatabase(join(sandbox.stateDir, 'runcd.db'));
  const token = issueToken(new TokenRepository(db), 'cli', 'read');
  db.close();
  const port = await freePort();
  await startDaemon(t, sandbox, [
    '--tcp',
    `127.0.0.1:${port}`,
    '--tls-cert',
    pki.path('server.pem'),
    '--tls-key',
    pki.path('server.key'),
    '--tls-client-ca',
    pki.path('ca.pem'),
  ]);
  const host = ['--host', `https://127.0.0.1:${port}`, '--cacert', pki.path('ca.pem')];
  const withCert = [...host, '--cert', pki.path('client.pem'), '--key', pki.path('client.key')];
  const ctl = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    run(process.execPath, [RUNCCTL, ...args], { env });

  t.same(await ctl([...withCert, '--token', token, 'list']), {
    code: 0,
    stdout: 'ID          PID         STATUS      BUNDLE      CREATED     OWNER\n',
    stderr: '',
  });
  t.equal((await ctl([...withCert, 'list'], { RUNCD_TOKEN: token })).code, 0, 'RUNCD_TOKEN works too');
  const noToken = await ctl([...withCert, 'list']);
  t.equal(noToken.code, 1);
  t.match(noToken.stderr, /^runcctl: a bearer token is required on TCP[^\n]*\n$/);
  const noCert = await ctl([...host, '--token', token, 'list']);
  t.equal(noCert.code, 1, 'without a client certificate there is no connection');
  t.match(
    noCert.stderr,
    /^runcctl: cannot reach runcd at https:\/\/127\.0\.0\.1:\d+: TLS: [^\n]*certificate required\n$/,
  );
  const scope = await ctl([...withCert, '--token', token, 'kill', 'x', 'KILL']);
  t.same(scope, {
    code: 1,
    stdout: '',
    stderr: 'runcctl: token "cli" has scope "read"; POST /containers/:id/kill needs "operate"\n',
  });
});
