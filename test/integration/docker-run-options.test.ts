import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import t, { type Test } from 'tap';
import { dockerIdOf } from '../../src/docker/docker-ids.js';
import { makeBusyboxRootfs, tarball } from '../helpers/rootfs.js';
import { dockerCli } from '../helpers/docker-cli.js';
import { DaemonProcess, eventually, makeSandbox, type Sandbox } from '../helpers/sandbox.js';

// What the docker CLI's everyday commands and `docker run` options do against runcd, as a user types them.

async function withImage(t: Test, name: string, daemonArgs: (sandbox: Sandbox) => string[] = () => []) {
  const sandbox = makeSandbox(t, name);
  const dockerSocket = join(sandbox.dir, 'docker.sock');
  const daemon = new DaemonProcess(sandbox, ['--docker-socket', dockerSocket, ...daemonArgs(sandbox)]);
  t.teardown(() => daemon.close());
  await daemon.start();
  const run = (...args: string[]) => dockerCli(dockerSocket, ...args);
  t.teardown(async () => {
    const ids = (await run('ps', '-aq')).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) await run('rm', '-f', ...ids);
  });
  const rootfs = makeBusyboxRootfs(sandbox.dir);
  mkdirSync(join(rootfs, 'etc'), { recursive: true });
  writeFileSync(
    join(rootfs, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  );
  writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\nstaff:x:50:\n');
  const archive = join(sandbox.dir, 'bb.tar');
  writeFileSync(archive, tarball(rootfs));
  const imported = await run('import', archive, 'bb');
  if (imported.code !== 0) throw new Error(imported.stderr);
  return { sandbox, run, docker: new Docker({ socketPath: dockerSocket }) };
}

t.test('run: -e of an unset variable is dropped, -u takes names from the image', async (t) => {
  const { run } = await withImage(t, 'dopt');
  // `-e VAR` sends the client's value of VAR; the test's environment has none.
  delete process.env.RUNCD_SURELY_UNSET_VAR;
  const env = await run(
    'run',
    '--rm',
    '-e',
    'RUNCD_SURELY_UNSET_VAR',
    '-e',
    'SET=1',
    'bb',
    'sh',
    '-c',
    'echo ${RUNCD_SURELY_UNSET_VAR-unset} $SET',
  );
  t.equal(env.code, 0, env.stderr);
  t.equal(env.stdout, 'unset 1\n', 'the unset variable is not in the container, the set one is');

  const nobody = await run('run', '--rm', '-u', 'nobody', 'bb', 'sh', '-c', 'id -u; id -g');
  t.equal(nobody.code, 0, nobody.stderr);
  t.equal(nobody.stdout, '65534\n65534\n', "-u nobody is the image's nobody, with its group");
  const staff = await run('run', '--rm', '-u', 'nobody:staff', 'bb', 'id', '-g');
  t.equal(staff.stdout, '50\n', staff.stderr);
  const ghost = await run('run', '--rm', '-u', 'ghost', 'bb', 'true');
  t.not(ghost.code, 0);
  t.match(ghost.stderr, /unable to find user ghost: no matching entries in passwd file/);
});

t.test('restart policies, start and stop as Docker has them', async (t) => {
  const { run, docker, sandbox } = await withImage(t, 'drst');
  const unless = sandbox.id('unless');
  t.equal(
    (await run('run', '-d', '--name', unless, '--restart', 'unless-stopped', 'bb', 'sleep', '1000')).code,
    0,
  );
  t.equal(
    (await run('inspect', '-f', '{{.HostConfig.RestartPolicy.Name}}', unless)).stdout.trim(),
    'unless-stopped',
  );
  const bogus = await run('run', '-d', '--restart', 'sometimes', 'bb', 'true');
  t.not(bogus.code, 0, 'an unknown policy is refused, not taken for always');

  // `docker start` of an exited container announces a start, which is what its clients wait for.
  const once = sandbox.id('once');
  t.equal((await run('run', '--name', once, 'bb', 'echo', 'ran')).code, 0);
  const attached = await run('start', '-a', once);
  t.equal(attached.code, 0, attached.stderr);
  t.equal(attached.stdout, 'ran\n', 'start -a of an exited container prints its new run');
  const since = String(Math.floor(Date.now() / 1000) - 1);
  t.equal((await run('start', once)).code, 0);
  await eventually(async () =>
    (await run('inspect', '-f', '{{.State.Status}}', once)).stdout.trim() === 'exited' ? true : undefined,
  );
  const events = await run(
    'events',
    '--since',
    since,
    '--until',
    String(Math.floor(Date.now() / 1000) + 1),
    '--filter',
    `container=${once}`,
    '--format',
    '{{.Action}}',
  );
  const actions = events.stdout.trim().split('\n');
  t.same(actions.slice(-2), ['start', 'die'], events.stderr);
  t.notOk(events.stdout.includes('restart'), 'a start, not a restart');

  // A container that keeps dying is stopped between its deaths (in the backoff): stop ends that for good.
  const flaky = sandbox.id('flaky');
  t.equal(
    (await run('run', '-d', '--name', flaky, '--restart', 'always', 'bb', 'sh', '-c', 'exit 1')).code,
    0,
  );
  const container = docker.getContainer(flaky);
  await eventually(async () => {
    const state = await container.inspect();
    return state.RestartCount >= 3 && state.State.Status === 'exited' ? true : undefined;
  }, 30_000);
  await container.stop({ t: 1 });
  t.pass('the stop answers 204 (dockerode rejects a 304)');
  const count = (await container.inspect()).RestartCount;
  // Longer than the backoff the next restart would have waited (the 4th or 5th: 0.8 s or 1.6 s).
  await new Promise((resolve) => setTimeout(resolve, 4000));
  const after = await container.inspect();
  t.equal(after.RestartCount, count, 'it does not come back');
  t.equal(after.State.Status, 'exited');
});

t.test('info counts images; events filter by image; build answers 501 naming build', async (t) => {
  const { run, sandbox } = await withImage(t, 'dinf');
  t.equal((await run('info', '--format', '{{.Images}}')).stdout.trim(), '1');
  const since = String(Math.floor(Date.now() / 1000) - 1);
  const id = sandbox.id('made');
  t.equal((await run('create', '--name', id, 'bb', 'true')).code, 0);
  const until = String(Math.floor(Date.now() / 1000) + 1);
  const byImage = await run(
    'events',
    '--since',
    since,
    '--until',
    until,
    '--filter',
    'image=bb',
    '--format',
    '{{.Actor.ID}} {{.Action}} {{.From}}',
  );
  t.equal(byImage.stdout.trim(), `${dockerIdOf(id)} create bb:latest`, byImage.stderr);
  const other = await run('events', '--since', since, '--until', until, '--filter', 'image=other');
  t.equal(other.stdout.trim(), '', 'another image filters it out');

  const context = join(sandbox.dir, 'context');
  mkdirSync(context);
  writeFileSync(join(context, 'Dockerfile'), 'FROM bb\n');
  const build = await run('build', context);
  t.not(build.code, 0);
  t.match(build.stderr, /runcd does not implement POST \/build \(docker build\)/);
  t.equal((await run('ps', '-aq')).stdout.trim().split('\n').length, 1, 'the daemon keeps serving');
});

/**
 * Every option that changes what a container is: it works (checked inside the container) or is refused naming
 * the option, and a refusal leaves no container behind.
 */
t.test('run options that change a container work through the bundle policy or are refused', async (t) => {
  const { run, sandbox } = await withImage(t, 'dhost', (sandbox) => [
    '--allow-mount-source',
    join(sandbox.dir, 'shared'),
  ]);
  const shared = join(sandbox.dir, 'shared');
  mkdirSync(shared);
  writeFileSync(join(shared, 'note.txt'), 'from-the-host\n');
  const outside = join(sandbox.dir, 'outside');
  mkdirSync(outside);

  const works: Array<[options: string[], script: string, expected: RegExp]> = [
    [['--tmpfs', '/tmp:size=1m'], 'df -k /tmp | tail -1', /^tmpfs\s+1024\s/m],
    [['--mount', 'type=tmpfs,dst=/tmp,tmpfs-size=2m'], 'df -k /tmp | tail -1', /^tmpfs\s+2048\s/m],
    [['--shm-size', '8m'], 'df -k /dev/shm | tail -1', /^shm\s+8192\s/m],
    [
      ['-v', `${shared}:/tmp:ro`],
      'cat /tmp/note.txt; touch /tmp/x 2>&1 || true',
      /from-the-host\n.*Read-only/,
    ],
    [['--mount', `type=bind,src=${shared},dst=/tmp`], 'cat /tmp/note.txt', /^from-the-host$/m],
    [['--log-driver', 'json-file'], 'echo logged', /^logged$/m],
  ];
  for (const [options, script, expected] of works) {
    const ran = await run('run', '--rm', ...options, 'bb', 'sh', '-c', script);
    t.equal(ran.code, 0, `${options.join(' ')}: ${ran.stderr}`);
    t.match(ran.stdout, expected, `${options.join(' ')} takes effect inside the container`);
  }

  const refused: Array<[options: string[], message: RegExp]> = [
    [['-v', `${outside}:/tmp`], /outside the allowed mount sources.*--allow-mount-source/],
    [['--mount', `type=bind,src=${outside},dst=/tmp`], /outside the allowed mount sources/],
    [['-v', 'bad#name:/tmp'], /includes invalid characters for a local volume name/],
    [['-v', '/data'], /does not support -v \/data \(an anonymous volume\)/],
    [['--mount', 'type=volume,dst=/data'], /does not support --mount type=volume without a source/],
    [['--privileged'], /does not support --privileged/],
    [['--cap-add', 'NET_ADMIN'], /does not support --cap-add/],
    [['--cap-drop', 'CHOWN'], /does not support --cap-drop/],
    [['--device', '/dev/null'], /does not support --device/],
    [['--security-opt', 'no-new-privileges'], /does not support --security-opt/],
    [['--add-host', 'db:127.0.0.2'], /does not support --add-host/],
    [['--dns', '127.0.0.53'], /does not support --dns/],
    [['--group-add', '50'], /does not support --group-add/],
    [['--log-driver', 'none'], /does not support --log-driver none/],
    [['--tmpfs', '/tmp:size=1m mode=1777'], /--tmpfs: invalid mount option/],
  ];
  for (const [options, message] of refused) {
    const ran = await run('run', '--rm', ...options, 'bb', 'true');
    t.not(ran.code, 0, `${options.join(' ')} is refused`);
    t.match(ran.stderr, message, `${options.join(' ')}: the refusal names it`);
  }
  t.equal((await run('ps', '-aq')).stdout.trim(), '', 'no refused create left a container');
});

t.test('stats --no-stream and container prune', async (t) => {
  const { run, sandbox } = await withImage(t, 'dstat');
  const busy = sandbox.id('busy');
  t.equal((await run('run', '-d', '--name', busy, '-m', '64m', 'bb', 'sleep', '1000')).code, 0);
  const done = sandbox.id('done');
  t.equal((await run('run', '--name', done, '--label', 'keep=no', 'bb', 'true')).code, 0);

  const named = await run('stats', '--no-stream', '--format', '{{.Name}} {{.MemUsage}} {{.PIDs}}', busy);
  t.equal(named.code, 0, named.stderr);
  t.match(named.stdout, new RegExp(`^${busy} \\S+ / 64MiB 1$`, 'm'), 'memory against its limit, one process');
  const all = await run('stats', '--no-stream', '--format', '{{.Name}} {{.CPUPerc}}');
  t.equal(all.code, 0, all.stderr);
  t.match(all.stdout, new RegExp(`^${busy} \\d+\\.\\d\\d%$`, 'm'), 'every running container, with a CPU %');
  t.notOk(all.stdout.includes(done), 'not the exited one');

  const kept = await run('container', 'prune', '-f', '--filter', 'label=keep=yes');
  t.equal(kept.code, 0, kept.stderr);
  t.match(
    (await run('ps', '-a', '--format', '{{.Names}}')).stdout,
    done,
    'a label that matches nothing prunes nothing',
  );
  const pruned = await run('container', 'prune', '-f');
  t.equal(pruned.code, 0, pruned.stderr);
  t.match(pruned.stdout, dockerIdOf(done));
  t.equal((await run('ps', '-a', '--format', '{{.Names}}')).stdout.trim(), busy, 'the running one stays');
});
