import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { dockerIdOf } from '../../src/docker/docker-ids.js';
import type { Container } from '../../src/schemas/container.js';
import { makeBusyboxRootfs, tarball } from '../helpers/rootfs.js';
import { dockerCli as docker, startWithDockerSocket } from '../helpers/docker-cli.js';
import { eventually, makeSandbox } from '../helpers/sandbox.js';

t.test('the docker CLI drives runcd containers through --docker-socket', async (t) => {
  const sandbox = makeSandbox(t, 'dcli');
  const { daemon, dockerSocket } = await startWithDockerSocket(t, sandbox);
  const run = (...args: string[]) => docker(dockerSocket, ...args);

  const version = await run('version', '--format', '{{.Server.APIVersion}} {{.Server.Os}}');
  t.equal(version.code, 0, version.stderr);
  t.equal(version.stdout.trim(), '1.50 linux', 'the CLI negotiates API 1.50 with runcd');

  // Containers come from the native API until managed bundles (images) exist.
  const id = sandbox.id('c1');
  const printer = sandbox.bundle('printer', [
    'sh',
    '-c',
    'echo out-line; echo err-line >&2; exec sleep 1000',
  ]);
  const created = await daemon.request<Container>('POST', '/containers', {
    id,
    bundle: printer,
    start: true,
    labels: { tier: 'web' },
  });
  t.equal(created.status, 201);

  const ps = await run('ps', '--no-trunc', '--format', '{{.ID}} {{.Names}} {{.Status}}');
  t.equal(ps.code, 0, ps.stderr);
  t.match(ps.stdout, new RegExp(`^${dockerIdOf(id)} ${id} Up `, 'm'), 'docker ps shows it Up');
  const filtered = await run('ps', '-q', '--filter', 'label=tier=db');
  t.equal(filtered.stdout.trim(), '', 'a label filter that matches nothing lists nothing');
  const byLabel = await run('ps', '-q', '--filter', 'label=tier=web');
  t.equal(byLabel.stdout.trim(), dockerIdOf(id).slice(0, 12));

  const shortId = dockerIdOf(id).slice(0, 12);
  const inspect = await run('inspect', '-f', '{{.State.Status}} {{.State.Running}} {{.Name}}', shortId);
  t.equal(inspect.stdout.trim(), `running true /${id}`, 'a short id prefix resolves');

  const exec = await run('exec', id, 'ps');
  t.equal(exec.code, 0, exec.stderr);
  t.match(exec.stdout, /^\s*1\s+\S+\s+sleep 1000$/m, 'docker exec ps lists sleep as PID 1');
  const exit3 = await run('exec', id, 'sh', '-c', 'echo to-err >&2; exit 3');
  t.equal(exit3.code, 3, 'docker exec exits with the process code');
  t.equal(exit3.stderr, 'to-err\n', 'stderr frames reach stderr');
  const missing = await run('exec', id, 'no-such-program');
  t.equal(missing.code, 127, 'a missing program exits 127, as with Docker');
  t.match(missing.stderr, /no-such-program/);

  const logs = await run('logs', id);
  t.equal(logs.stdout, 'out-line\n', 'docker logs: stdout frames');
  t.equal(logs.stderr, 'err-line\n', 'docker logs: stderr frames');
  const stamped = await run('logs', '--timestamps', '--tail', '1', id);
  t.match(stamped.stdout + stamped.stderr, /^\d{4}-\d\d-\d\dT\S+ (out|err)-line\n$/);

  const top = await run('top', id);
  t.equal(top.code, 0, top.stderr);
  t.match(top.stdout, /sleep 1000/);

  t.equal((await run('pause', id)).code, 0);
  t.equal(
    (await run('inspect', '-f', '{{.State.Status}} {{.State.Paused}}', id)).stdout.trim(),
    'paused true',
  );
  t.equal((await run('unpause', id)).code, 0);
  t.equal((await run('inspect', '-f', '{{.State.Status}}', id)).stdout.trim(), 'running');

  const startAgain = await run('start', id);
  t.equal(startAgain.code, 0, 'starting a running container is a 304, which the CLI accepts');

  const stop = await run('stop', '-t', '1', id);
  t.equal(stop.code, 0, stop.stderr);
  t.equal(
    (await run('inspect', '-f', '{{.State.ExitCode}} {{.State.Status}}', id)).stdout.trim(),
    '137 exited',
    'sleep ignores SIGTERM as PID 1: it ends by SIGKILL',
  );
  const wait = await run('wait', id);
  t.equal(wait.stdout.trim(), '137');

  const kill = await run('kill', id);
  t.equal(kill.code, 1, 'killing a stopped container fails');
  t.match(kill.stderr, /is not running/);

  const events = await run(
    'events',
    '--since',
    String(Math.floor(Date.parse(created.body.created) / 1000) - 1),
    '--until',
    String(Math.ceil(Date.now() / 1000) + 1),
    '--filter',
    `container=${id}`,
    '--format',
    '{{.Action}}',
  );
  t.equal(events.code, 0, events.stderr);
  const actions = events.stdout.trim().split('\n');
  for (const action of ['create', 'start', 'pause', 'unpause', 'die', 'stop']) {
    t.ok(actions.includes(action), `docker events shows ${action}`);
  }
  const fromEpoch = await run(
    'events',
    '--since',
    '0',
    '--until',
    String(Math.ceil(Date.now() / 1000) + 1),
    '--filter',
    `container=${id}`,
    '--format',
    '{{.Action}}',
  );
  t.equal(fromEpoch.code, 0, fromEpoch.stderr);
  t.same(
    fromEpoch.stdout.trim().split('\n'),
    actions,
    '--since 0 replays from the beginning, as Docker does',
  );

  const stopAgain = await run('stop', id);
  t.equal(stopAgain.code, 0, 'stopping a stopped container is a 304, which the CLI accepts');

  const rm = await run('rm', id);
  t.equal(rm.code, 0, rm.stderr);
  t.equal((await run('ps', '-aq')).stdout.trim(), '', 'nothing is left');
  const gone = await run('inspect', id);
  t.equal(gone.code, 1);
  t.match(gone.stderr, new RegExp(`No such (container|object): ${id}`));
});

t.test(
  'docker import makes an image; docker run uses it, in the background and in the foreground',
  async (t) => {
    const sandbox = makeSandbox(t, 'dimg');
    const { dockerSocket } = await startWithDockerSocket(t, sandbox);
    const run = (...args: string[]) => docker(dockerSocket, ...args);
    const archive = join(sandbox.dir, 'busybox.tar');
    writeFileSync(archive, tarball(makeBusyboxRootfs(sandbox.dir)));

    const imported = await run('import', archive, 'bb');
    t.equal(imported.code, 0, imported.stderr);
    t.match(imported.stdout, /^sha256:[0-9a-f]{64}$/m);
    t.match((await run('images', '--format', '{{.Repository}}:{{.Tag}}')).stdout, /^bb:latest$/m);
    const again = await run('import', archive, 'bb');
    t.not(again.code, 0, 'importing over an existing image is refused');
    t.match(again.stderr, /already exists/);

    const c1 = sandbox.id('c1');
    const started = await run('run', '-d', '--name', c1, '--label', 'role=test', 'bb', 'sleep', '1000');
    t.equal(started.code, 0, started.stderr);
    t.equal(started.stdout.trim(), dockerIdOf(c1));
    t.match((await run('ps', '--format', '{{.Image}} {{.Names}} {{.Status}}')).stdout, `bb:latest ${c1} Up`);
    const ps = await run('exec', c1, 'ps');
    t.match(ps.stdout, /^\s*1\s+\S+\s+sleep 1000$/m, 'sleep is PID 1');
    t.equal((await run('exec', c1, 'sh', '-c', 'exit 3')).code, 3);
    t.equal((await run('stop', '-t', '1', c1)).code, 0);
    t.equal((await run('inspect', '-f', '{{.State.ExitCode}}', c1)).stdout.trim(), '137');
    const inUse = await run('rmi', 'bb');
    t.not(inUse.code, 0, 'an image in use cannot be removed');
    t.equal((await run('rm', c1)).code, 0);

    const hello = await run('run', '--rm', 'bb', 'echo', 'hello');
    t.equal(hello.code, 0, hello.stderr);
    t.equal(hello.stdout, 'hello\n', 'a foreground run prints the output');
    const exit4 = await run('run', '--rm', 'bb', 'sh', '-c', 'echo oops >&2; exit 4');
    t.equal(exit4.code, 4, 'and exits with the container code');
    t.equal(exit4.stderr, 'oops\n');
    t.equal((await run('ps', '-aq')).stdout.trim(), '', '--rm leaves nothing behind');

    const c2 = sandbox.id('init');
    t.equal((await run('run', '--init', '-d', '--name', c2, 'bb', 'sleep', '1000')).code, 0);
    t.equal((await run('stop', c2)).code, 0);
    t.equal(
      (await run('inspect', '-f', '{{.State.ExitCode}}', c2)).stdout.trim(),
      '143',
      'with --init, SIGTERM ends sleep (143) instead of waiting for SIGKILL (137)',
    );
    t.equal((await run('rm', c2)).code, 0);

    // A created container is removed without -f, as Docker (and runc delete) do.
    const c3 = sandbox.id('created');
    const made = await run('create', '--name', c3, 'bb', 'sleep', '1000');
    t.equal(made.code, 0, made.stderr);
    t.equal((await run('inspect', '-f', '{{.State.Status}}', c3)).stdout.trim(), 'created');
    const rmCreated = await run('rm', c3);
    t.equal(rmCreated.code, 0, rmCreated.stderr);
    t.equal((await run('ps', '-aq')).stdout.trim(), '', 'the created container is gone');

    const c4 = sandbox.id('autorm');
    t.equal((await run('run', '-d', '--rm', '--name', c4, 'bb', 'sleep', '1000')).code, 0);
    t.equal((await run('inspect', '-f', '{{.HostConfig.AutoRemove}}', c4)).stdout.trim(), 'true');
    t.equal((await run('kill', c4)).code, 0);
    // Removed right after its exit (as with Docker, a later `docker wait` may find it gone already).
    await eventually(async () => ((await run('ps', '-aq')).stdout.trim() === '' ? true : undefined));
    t.pass('a --rm container is removed once it dies');
    const removed = await run('rmi', 'bb');
    t.equal(removed.code, 0, removed.stderr);
    t.match(removed.stdout, /Untagged: bb:latest/);
    const missing = await run('run', '--rm', 'bb', 'true');
    t.not(missing.code, 0);
    t.match(
      missing.stderr,
      /runcd does not implement pulling images .*docker load.*docker import/,
      'the CLI tries to pull',
    );
    const pull = await run('pull', 'busybox');
    t.not(pull.code, 0);
    t.match(pull.stderr, /runcd does not implement pulling images .*docker load.*docker import/);
  },
);

t.test('what runcd does not implement answers 501 naming the endpoint', async (t) => {
  const sandbox = makeSandbox(t, 'd501');
  const { dockerSocket } = await startWithDockerSocket(t, sandbox);
  const run = (...args: string[]) => docker(dockerSocket, ...args);

  const prune = await run('volume', 'prune', '-f');
  t.not(prune.code, 0);
  t.match(prune.stderr, /runcd does not implement POST \/volumes\/prune of the Docker Engine API/);
  const history = await run('image', 'history', 'bb');
  t.not(history.code, 0);
  t.match(history.stderr, /runcd does not implement GET \/images\/bb\/history of the Docker Engine API/);
  const stdin = await run('run', '-i', 'bb', 'sh');
  t.match(stdin.stderr, /runcd does not implement stdin for a container without a TTY/);
  const exists = await run('ps');
  t.equal(exists.code, 0, 'the daemon keeps serving');
});
