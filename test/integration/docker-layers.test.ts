import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { withBusyboxImage as withImage, type DockerSetup } from '../helpers/docker-image.js';
import { eventually } from '../helpers/sandbox.js';

// Each Docker container writes to a layer of its own over the image's rootfs (issue 17: "The rootfs is always
// read-only"), mounted by runcd and gone with the container, whatever happens to runcd in between.

/** Whether `path` is a mount point, as findmnt(8) sees it. */
function mounted(path: string): boolean {
  try {
    execFileSync('findmnt', ['--mountpoint', path], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function bundleOf(run: DockerSetup['run'], name: string): Promise<string> {
  const inspect = await run('inspect', '-f', '{{.GraphDriver.Data.Bundle}}', name);
  if (inspect.code !== 0) throw new Error(inspect.stderr);
  return inspect.stdout.trim();
}

/** The container's layer, mount and directory, gone (a delete's clean-up finishes after its answer). */
async function goneEventually(bundle: string): Promise<boolean> {
  return eventually(async () => (!mounted(join(bundle, 'rootfs')) && !existsSync(bundle) ? true : undefined));
}

t.test('a container writes to its own layer; the image and other containers never see it', async (t) => {
  const { run, sandbox, imageRootfs } = await withImage(t, 'dlay');
  const touched = await run('run', '--rm', 'bb', 'touch', '/x');
  t.equal(touched.code, 0, `docker run --rm bb touch /x works: ${touched.stderr}`);

  const one = sandbox.id('one');
  const two = sandbox.id('two');
  for (const name of [one, two]) {
    t.equal((await run('run', '-d', '--name', name, 'bb', 'sleep', '1000')).code, 0);
  }
  const write = await run('exec', one, 'sh', '-c', 'echo changed > /etc/motd && echo new > /created');
  t.equal(write.code, 0, write.stderr);
  t.equal((await run('exec', one, 'cat', '/etc/motd', '/created')).stdout, 'changed\nnew\n');
  t.equal(
    (await run('exec', two, 'cat', '/etc/motd')).stdout,
    'from the image\n',
    'the other container of the same image still sees the image file',
  );
  const missing = await run('exec', two, 'cat', '/created');
  t.not(missing.code, 0, "a file created in one container is not in the other's");
  const image = await imageRootfs();
  t.notOk(existsSync(join(image, 'created')), 'nor in the image');
  t.notOk(existsSync(join(image, 'x')), "the --rm container's file is not in the image");
  const fresh = await run('run', '--rm', 'bb', 'cat', '/etc/motd');
  t.equal(fresh.stdout, 'from the image\n', 'a new container starts from the image as it was');

  const bundle = await bundleOf(run, one);
  t.ok(mounted(join(bundle, 'rootfs')), "the layer is mounted at the container's bundle rootfs");
  t.equal((await run('rm', '-f', one)).code, 0);
  t.ok(await goneEventually(bundle), 'delete leaves no mount and no directory');
  t.equal(
    (await run('exec', two, 'cat', '/etc/motd')).stdout,
    'from the image\n',
    "removing one container's layer leaves the other's",
  );
});

t.test('the layer outlives a run of its container, not the container', async (t) => {
  const { run, sandbox } = await withImage(t, 'dlrn');
  const name = sandbox.id('counter');
  const first = await run('run', '--name', name, 'bb', 'sh', '-c', 'echo run >> /runs; wc -l < /runs');
  t.equal(first.stdout.trim(), '1', first.stderr);
  const again = await run('start', '-a', name);
  t.equal(again.stdout.trim(), '2', 'docker start runs it again on the same layer');
  const bundle = await bundleOf(run, name);
  t.equal((await run('rm', name)).code, 0);
  t.ok(await goneEventually(bundle));
});

t.test('--read-only keeps the rootfs read-only, with no layer', async (t) => {
  const { run, sandbox } = await withImage(t, 'dlro');
  const refused = await run('run', '--rm', '--read-only', 'bb', 'touch', '/x');
  t.not(refused.code, 0);
  t.match(refused.stderr + refused.stdout, /Read-only file system/);
  const name = sandbox.id('ro');
  t.equal((await run('create', '--read-only', '--name', name, 'bb', 'true')).code, 0);
  t.equal((await run('inspect', '-f', '{{.HostConfig.ReadonlyRootfs}}', name)).stdout.trim(), 'true');
  const bundle = await bundleOf(run, name);
  t.notOk(existsSync(join(bundle, 'layer')), 'no layer is made');
  t.notOk(mounted(join(bundle, 'rootfs')), 'nothing is mounted');
  const writable = sandbox.id('rw');
  t.equal((await run('create', '--name', writable, 'bb', 'true')).code, 0);
  t.equal((await run('inspect', '-f', '{{.HostConfig.ReadonlyRootfs}}', writable)).stdout.trim(), 'false');
});

t.test('a SIGKILLed runcd leaves nothing behind once the container is deleted', async (t) => {
  const setup = await withImage(t, 'dlkl');
  const { run, sandbox } = setup;
  const kept = sandbox.id('kept');
  t.equal((await run('create', '--name', kept, 'bb', 'sh', '-c', 'echo kept > /kept')).code, 0);
  const keptBundle = await bundleOf(run, kept);
  const remounted = sandbox.id('remounted');
  t.equal((await run('create', '--name', remounted, 'bb', 'sh', '-c', 'echo ok > /y && cat /y')).code, 0);
  const remountedBundle = await bundleOf(run, remounted);

  await setup.restart('SIGKILL');
  t.ok(mounted(join(keptBundle, 'rootfs')), 'the layer of a container that still exists stays mounted');
  t.equal((await setup.run('rm', kept)).code, 0, 'delete after the restart');
  t.ok(await goneEventually(keptBundle), 'no mount and no directory left');

  // As after a reboot: the mount is gone, the container is not. The next start mounts it again.
  execFileSync('umount', [join(remountedBundle, 'rootfs')]);
  await setup.restart('SIGKILL');
  t.ok(mounted(join(remountedBundle, 'rootfs')), 'a layer that was not mounted is mounted at start');
  const started = await setup.run('start', '-a', remounted);
  t.equal(started.stdout, 'ok\n', `the container runs and writes on it: ${started.stderr}`);
  t.equal((await setup.run('rm', remounted)).code, 0);
  t.ok(await goneEventually(remountedBundle));
});
