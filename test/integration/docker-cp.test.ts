import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import t from 'tap';
import { withBusyboxImage } from '../helpers/docker-image.js';
import { rawRequest } from '../helpers/raw-http.js';
import { buildTar } from '../helpers/tar-builder.js';

// docker cp both ways and testcontainers' withCopyContentToContainer (PUT /containers/ID/archive), through the
// real docker CLI and dockerode, and what a container cannot make a copy do.

const MIB = 1024 * 1024;

t.test('docker cp copies files and directories into and out of a container', async (t) => {
  const { run, sandbox } = await withBusyboxImage(t, 'dcp');
  const name = sandbox.id('box');
  t.equal((await run('run', '-d', '--name', name, 'bb', 'sleep', '1000')).code, 0);

  const local = join(sandbox.dir, 'local.txt');
  writeFileSync(local, 'from the host\n');
  const into = await run('cp', local, `${name}:/tmp/`);
  t.equal(into.code, 0, `docker cp FILE C:/tmp/: ${into.stderr}`);
  t.equal((await run('exec', name, 'cat', '/tmp/local.txt')).stdout, 'from the host\n');

  const tree = join(sandbox.dir, 'tree');
  mkdirSync(join(tree, 'sub'), { recursive: true });
  writeFileSync(join(tree, 'sub', 'deep.txt'), 'deep\n');
  t.equal((await run('cp', tree, `${name}:/opt`)).code, 0);
  t.equal((await run('exec', name, 'cat', '/opt/sub/deep.txt')).stdout, 'deep\n', 'a directory, recursively');

  const out = join(sandbox.dir, 'motd.out');
  const fromFile = await run('cp', `${name}:/etc/motd`, out);
  t.equal(fromFile.code, 0, fromFile.stderr);
  t.equal(readFileSync(out, 'utf8'), 'from the image\n', 'docker cp C:FILE LOCAL');

  t.equal(
    (await run('exec', name, 'sh', '-c', 'mkdir -p /data/a && echo one > /data/a/1 && ln -s a/1 /data/link'))
      .code,
    0,
  );
  const outDir = join(sandbox.dir, 'data.out');
  const fromDir = await run('cp', `${name}:/data`, outDir);
  t.equal(fromDir.code, 0, fromDir.stderr);
  t.equal(readFileSync(join(outDir, 'a', '1'), 'utf8'), 'one\n', 'docker cp C:DIR LOCAL');
  t.equal(readFileSync(join(outDir, 'link'), 'utf8'), 'one\n', 'with its symlinks');

  const missing = await run('cp', `${name}:/no/such/file`, join(sandbox.dir, 'nothing'));
  t.not(missing.code, 0);
  t.match(missing.stderr, /Could not find the file|no such file/i, 'a missing path is a 404');

  // A created, never started container (testcontainers copies before it starts).
  const fresh = sandbox.id('fresh');
  t.equal((await run('create', '--name', fresh, 'bb', 'cat', '/tmp/local.txt')).code, 0);
  t.equal((await run('cp', local, `${fresh}:/tmp/`)).code, 0);
  t.equal((await run('start', '-a', fresh)).stdout, 'from the host\n', 'a copy into a created container');
});

t.test(
  'dockerode putArchive/getArchive as testcontainers uses them; HEAD answers the path stat',
  async (t) => {
    const { sandbox, dockerSocket, run } = await withBusyboxImage(t, 'dcpd');
    const docker = new Docker({ socketPath: dockerSocket });
    const name = sandbox.id('tc');
    const container = await docker.createContainer({
      Image: 'bb',
      name,
      Cmd: ['sh', '-c', 'cat /app/config.json; ls -n /app/config.json'],
    });
    // withCopyContentToContainer: a tar of the content, put at "/".
    const archive = await buildTar([
      { header: { name: 'app/', type: 'directory', mode: 0o755 } },
      { header: { name: 'app/config.json', mode: 0o644, uid: 1000, gid: 1000 }, content: '{"ok":true}\n' },
    ]);
    await container.putArchive(archive, { path: '/' });
    await container.start();
    await container.wait();
    const output = await run('logs', name);
    t.match(
      output.stdout,
      /^\{"ok":true\}\n-rw-r--r--\s+1 1000\s+1000\s/,
      `the container reads the copy, owned as in the archive: ${output.stderr}`,
    );
    const other = await run('run', '--rm', 'bb', 'ls', '/app');
    t.not(other.code, 0, 'another container of the image does not have the copy');

    const head = await rawRequest(dockerSocket, {
      method: 'HEAD',
      path: `/containers/${name}/archive?path=/app`,
    });
    t.equal(head.status, 200);
    const stat = JSON.parse(
      Buffer.from(String(head.headers['x-docker-container-path-stat']), 'base64').toString('utf8'),
    ) as { name: string; mode: number; linkTarget: string };
    t.equal(stat.name, 'app');
    t.equal(Math.floor(stat.mode / 2 ** 31), 1, 'a directory, in Go os.FileMode bits');
    t.equal(stat.mode % 2 ** 9, 0o755);

    const fetched = (await container.getArchive({ path: '/app/config.json' })) as NodeJS.ReadableStream;
    const chunks: Buffer[] = [];
    for await (const chunk of fetched) chunks.push(chunk as Buffer);
    const tar = Buffer.concat(chunks);
    t.equal(tar.subarray(0, 11).toString(), 'config.json', 'the entry is named by its base name');
    t.ok(tar.includes(Buffer.from('{"ok":true}\n')), 'and holds the file');
  },
);

t.test('a copy never leaves the container: .. and symlinks are resolved inside its root', async (t) => {
  const { run, sandbox, dockerSocket } = await withBusyboxImage(t, 'dcps');
  const hostSecret = join(sandbox.dir, 'secret');
  writeFileSync(hostSecret, 'host only\n');
  const hostDir = join(sandbox.dir, 'hostdir');
  mkdirSync(hostDir);
  const name = sandbox.id('box');
  t.equal((await run('run', '-d', '--name', name, 'bb', 'sleep', '1000')).code, 0);
  const links = `ln -s ../../../../../.. /up && ln -s ${hostSecret} /abs-secret && ln -s ${hostDir} /abs-dir && ln -s /etc /etc-link`;
  t.equal((await run('exec', name, 'sh', '-c', links)).code, 0);

  const climbing = await rawRequest(dockerSocket, {
    method: 'GET',
    path: `/containers/${name}/archive?path=${encodeURIComponent(`/up${sandbox.dir}/secret`)}`,
  });
  t.equal(climbing.status, 400, 'a symlink that climbs out of the root is refused');
  t.match(climbing.text, /climbs out of the container's root/);
  const dotdot = await rawRequest(dockerSocket, {
    method: 'GET',
    path: `/containers/${name}/archive?path=${encodeURIComponent('/../../etc/passwd')}`,
  });
  t.equal(dotdot.status, 400, '.. above the root is refused');

  const followed = await run('cp', '-L', `${name}:/abs-secret`, join(sandbox.dir, 'leaked'));
  t.not(followed.code, 0, "an absolute link target is the container's path, which does not exist there");
  t.notOk(existsSync(join(sandbox.dir, 'leaked')), 'the host file is not copied out');
  const inside = await run('cp', `${name}:/etc-link/motd`, join(sandbox.dir, 'motd'));
  t.equal(inside.code, 0, inside.stderr);
  t.equal(
    readFileSync(join(sandbox.dir, 'motd'), 'utf8'),
    'from the image\n',
    'a link inside the root works',
  );

  const planted = join(sandbox.dir, 'planted.txt');
  writeFileSync(planted, 'planted\n');
  const intoLink = await run('cp', planted, `${name}:/abs-dir/`);
  t.not(intoLink.code, 0, 'a copy into an absolute link that names a host directory finds nothing');
  t.same(readdirSync(hostDir), [], 'and writes nothing on the host');

  const hostile = await buildTar([{ header: { name: '../escaped.txt' }, content: 'x' }]);
  const put = await rawRequest(dockerSocket, {
    method: 'PUT',
    path: `/containers/${name}/archive?path=/tmp`,
    headers: { 'content-type': 'application/x-tar' },
    body: hostile,
  });
  t.equal(put.status, 400, 'an archive entry with .. is refused');
  t.match(put.text, /escaped\.txt.*is absolute or contains/);
  const viaLink = await buildTar([
    { header: { name: 'hop', type: 'symlink', linkname: '../../../../..' } },
    { header: { name: `hop${sandbox.dir}/hostdir/written.txt` }, content: 'x' },
  ]);
  const hop = await rawRequest(dockerSocket, {
    method: 'PUT',
    path: `/containers/${name}/archive?path=/tmp`,
    headers: { 'content-type': 'application/x-tar' },
    body: viaLink,
  });
  t.equal(hop.status, 400, 'an entry through a symlink the archive itself made, climbing out, is refused');
  t.same(readdirSync(hostDir), [], 'nothing was written on the host');

  const onMount = await rawRequest(dockerSocket, {
    method: 'GET',
    path: `/containers/${name}/archive?path=/proc/self/environ`,
  });
  t.equal(onMount.status, 400, "a path on the container's /proc mount is refused");
  t.match(onMount.text, /mount at \/proc/);
});

t.test('copies into a read-only container are refused; a copy is bounded', async (t) => {
  const { run, sandbox, dockerSocket } = await withBusyboxImage(t, 'dcpb', [
    '--max-rootfs-bytes',
    String(8 * MIB),
  ]);
  const ro = sandbox.id('ro');
  t.equal((await run('create', '--read-only', '--name', ro, 'bb', 'true')).code, 0);
  const small = join(sandbox.dir, 'small.txt');
  writeFileSync(small, 'x');
  const refused = await run('cp', small, `${ro}:/tmp/`);
  t.not(refused.code, 0);
  t.match(refused.stderr, /read-only/);

  const rw = sandbox.id('rw');
  t.equal((await run('create', '--name', rw, 'bb', 'true')).code, 0);
  const big = await buildTar([{ header: { name: 'big.bin' }, content: Buffer.alloc(9 * MIB, 1) }]);
  const put = await rawRequest(dockerSocket, {
    method: 'PUT',
    path: `/containers/${rw}/archive?path=/tmp`,
    headers: { 'content-type': 'application/x-tar' },
    body: big,
  });
  t.equal(put.status, 413, 'files over --max-rootfs-bytes are a 413');
  const garbage = await rawRequest(dockerSocket, {
    method: 'PUT',
    path: `/containers/${rw}/archive?path=/tmp`,
    headers: { 'content-type': 'application/x-tar' },
    body: Buffer.from('this is not a tar archive, not at all, and it goes on for a while'.repeat(20)),
  });
  t.equal(garbage.status, 400, 'a body that is not a tar is a 400');
  const noDir = await rawRequest(dockerSocket, {
    method: 'PUT',
    path: `/containers/${rw}/archive?path=/etc/motd`,
    headers: { 'content-type': 'application/x-tar' },
    body: await buildTar([{ header: { name: 'x' }, content: 'x' }]),
  });
  t.equal(noDir.status, 400, 'the extraction point must be a directory');
  const noPath = await rawRequest(dockerSocket, { method: 'GET', path: `/containers/${rw}/archive` });
  t.equal(noPath.status, 400, 'path is required');
});
