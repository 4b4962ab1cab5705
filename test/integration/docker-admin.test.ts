import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { makeBusyboxRootfs, tarball } from '../helpers/rootfs.js';
import { dockerCli, startWithDockerSocket } from '../helpers/docker-cli.js';
import { withBusyboxImage } from '../helpers/docker-image.js';
import { makeSandbox } from '../helpers/sandbox.js';

// `docker update`, `system df` and `image prune` as a user types them. docker update: the limits reach the container's cgroups, inspect shows them, a restart
// keeps them, and every option runcd cannot apply is refused by name.

/** A cgroup v1 controller's file for the container whose init is `pid` (this VM runs hybrid cgroups). */
function cgroupFile(pid: number, controller: string, file: string): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((entry) => entry.split(':')[1]?.split(',').includes(controller));
  if (!line) throw new Error(`no ${controller} cgroup for pid ${pid}`);
  return readFileSync(join('/sys/fs/cgroup', controller, line.split(':')[2]!, file), 'utf8').trim();
}

t.test('docker update changes memory, CPUs and pids of a running container', async (t) => {
  const { sandbox, run } = await withBusyboxImage(t, 'dupd');
  const name = sandbox.id('upd');
  const started = await run('run', '-d', '--name', name, '--init', 'bb', 'sleep', '1000');
  t.equal(started.code, 0, started.stderr);
  const pidOf = async () => Number((await run('inspect', '-f', '{{.State.Pid}}', name)).stdout.trim());

  const updated = await run('update', '--memory', '64m', '--cpus', '0.5', '--pids-limit', '50', name);
  t.equal(updated.code, 0, updated.stderr);
  t.equal(updated.stdout.trim(), name, 'the CLI prints the container it updated');
  const pid = await pidOf();
  t.equal(
    cgroupFile(pid, 'memory', 'memory.limit_in_bytes'),
    String(64 * 1024 * 1024),
    'memory in the cgroup',
  );
  t.equal(cgroupFile(pid, 'cpu', 'cpu.cfs_quota_us'), '50000', 'half a CPU: 50 ms of every 100 ms');
  t.equal(cgroupFile(pid, 'pids', 'pids.max'), '50', 'pids in the cgroup');
  const shown = await run(
    'inspect',
    '-f',
    '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}',
    name,
  );
  t.equal(shown.stdout.trim(), `${64 * 1024 * 1024} 500000000 50`, 'docker inspect shows the new limits');

  const quota = await run('update', '--cpu-quota', '25000', '--cpu-period', '100000', name);
  t.equal(quota.code, 0, quota.stderr);
  t.equal(cgroupFile(pid, 'cpu', 'cpu.cfs_quota_us'), '25000', '--cpu-quota/--cpu-period as given');

  // A restart runs the container again from runcd's copy of its config: the limits stay.
  t.equal((await run('restart', '-t', '1', name)).code, 0);
  const again = await pidOf();
  t.not(again, pid, 'a new init after the restart');
  t.equal(
    cgroupFile(again, 'memory', 'memory.limit_in_bytes'),
    String(64 * 1024 * 1024),
    'kept across a restart',
  );
  t.equal(cgroupFile(again, 'pids', 'pids.max'), '50');

  for (const [args, expected] of [
    [['--cpu-shares', '512'], /docker update --cpu-shares/],
    [['--restart', 'always'], /docker update --restart/],
    [['--memory', '64m', '--memory-swap', '128m'], /--memory-swap/],
    [['--cpuset-cpus', '0'], /--cpuset-cpus/],
  ] as const) {
    const refused = await run('update', ...args, name);
    t.not(refused.code, 0, `update ${args.join(' ')} is refused`);
    t.match(refused.stderr, expected, 'naming the option');
  }
  const tiny = await run('update', '--memory', '1m', name);
  t.not(tiny.code, 0);
  t.match(tiny.stderr, /memoryBytes must be at least 6 MiB/, 'a limit out of range is a 400 saying why');
  t.equal(
    cgroupFile(again, 'memory', 'memory.limit_in_bytes'),
    String(64 * 1024 * 1024),
    'refusals changed nothing',
  );

  t.equal((await run('stop', '-t', '1', name)).code, 0);
  const stopped = await run('update', '--memory', '32m', name);
  t.not(stopped.code, 0, 'a stopped container cannot be updated (runc updates live cgroups)');
  t.match(stopped.stderr, /cannot change the resources of a container that is stopped/);
  const missing = await run('update', '--memory', '32m', sandbox.id('ghost'));
  t.not(missing.code, 0);
  t.match(missing.stderr, /No such container/);
});

t.test(
  'docker system df counts images and containers; image prune -a removes only unused images',
  async (t) => {
    const sandbox = makeSandbox(t, 'ddf');
    const { dockerSocket } = await startWithDockerSocket(t, sandbox);
    const run = (...args: string[]) => dockerCli(dockerSocket, ...args);
    t.teardown(async () => {
      const ids = (await run('ps', '-aq')).stdout.split('\n').filter(Boolean);
      if (ids.length > 0) await run('rm', '-f', ...ids);
    });
    const archive = join(sandbox.dir, 'bb.tar');
    writeFileSync(archive, tarball(makeBusyboxRootfs(sandbox.dir)));
    t.equal((await run('import', archive, 'used')).code, 0);
    t.equal((await run('import', archive, 'unused')).code, 0);
    t.equal((await run('tag', 'unused', 'unused:second')).code, 0);
    const name = sandbox.id('user');
    t.equal((await run('run', '-d', '--name', name, 'used', 'sleep', '1000')).code, 0);

    const df = await run('system', 'df', '--format', '{{.Type}} {{.TotalCount}} {{.Active}}');
    t.equal(df.code, 0, df.stderr);
    t.match(df.stdout, /^Images 2 1$/m, 'two images, one in use');
    t.match(df.stdout, /^Containers 1 1$/m, 'one container, running');
    t.match(df.stdout, /^Local Volumes 0 0$/m);
    const verbose = await run('system', 'df', '-v');
    t.equal(verbose.code, 0, verbose.stderr);
    t.match(verbose.stdout, new RegExp(name), 'the verbose form lists the container');

    const plain = await run('image', 'prune', '-f');
    t.equal(plain.code, 0, plain.stderr);
    t.match(
      plain.stdout,
      /Total reclaimed space: 0B/,
      'no dangling images exist: a plain prune removes nothing',
    );
    const names = (await run('images', '--format', '{{.Repository}}:{{.Tag}}')).stdout.trim().split('\n');
    t.same(names.sort(), ['unused:latest', 'unused:second', 'used:latest'], 'every image is still there');

    const all = await run('image', 'prune', '-a', '-f');
    t.equal(all.code, 0, all.stderr);
    t.match(all.stdout, /untagged: unused:latest/);
    t.match(all.stdout, /untagged: unused:second/);
    t.match(all.stdout, /deleted: sha256:/);
    const left = await run('images', '--format', '{{.Repository}}');
    t.equal(left.stdout.trim(), 'used', 'the image a container uses stays');
    t.equal((await run('exec', name, 'true')).code, 0, 'and its container still runs');

    const bad = await run('image', 'prune', '-f', '--filter', 'label=x');
    t.not(bad.code, 0, 'a filter runcd does not apply is refused, not ignored');
    t.match(bad.stderr, /invalid filter 'label'/);
  },
);
