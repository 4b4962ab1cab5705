import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Docker from 'dockerode';
import t from 'tap';
import {
  buildOciLayout,
  buildTar,
  dockerArchiveOf,
  handmadeOciArchive,
  ociArchiveOf,
} from '../helpers/image-archive.js';
import { makeBusyboxRootfs } from '../helpers/rootfs.js';
import { dockerCli as docker, startWithDockerSocket } from '../helpers/docker-cli.js';
import { eventually, makeSandbox, startInProcess } from '../helpers/sandbox.js';

/** Nothing of a load may stay behind in the bundle root but the bundles it made. */
function scratchLeft(bundleRoot: string): string[] {
  return readdirSync(bundleRoot).filter((name) => name.startsWith('.'));
}

t.test(
  'docker load of docker save archives (Docker form and OCI layout) made without a Docker engine',
  async (t) => {
    const sandbox = makeSandbox(t, 'dload');
    const { dockerSocket } = await startWithDockerSocket(t, sandbox);
    const run = (...args: string[]) => docker(dockerSocket, ...args);

    const rootfs = makeBusyboxRootfs(sandbox.dir);
    const plainWork = join(sandbox.dir, 'plain');
    mkdirSync(plainWork);
    const plain = buildOciLayout(plainWork, rootfs, {
      cmd: ['sh', '-c', 'echo default-cmd in $PWD with FOO=$FOO'],
      env: ['FOO=bar'],
      workingDir: '/tmp',
    });
    const saved = dockerArchiveOf(plain, join(sandbox.dir, 'bbload.tar'), 'bbload:latest');
    t.ok(readFileSync(saved).includes('manifest.json'), 'skopeo wrote the Docker form (manifest.json)');

    const loaded = await run('load', '-i', saved);
    t.equal(loaded.code, 0, loaded.stderr);
    t.equal(loaded.stdout, 'Loaded image: bbload:latest\n', 'the CLI prints what it loaded');
    // The audit line is appended as the answer goes out: read until it is there, whole.
    type AuditEntry = { route?: string; runtime?: Array<{ argv: string[]; exitCode: number }> };
    const auditEntries = (): AuditEntry[] =>
      readFileSync(join(sandbox.stateDir, 'audit.log'), 'utf8')
        .split('\n')
        .flatMap((line) => {
          try {
            return [JSON.parse(line) as AuditEntry];
          } catch {
            return [];
          }
        });
    const loadEntry = await eventually(async () =>
      auditEntries().find((entry) => entry.route === '/images/load'),
    ).catch(() => undefined);
    t.same(
      loadEntry?.runtime
        ?.filter((call) => /skopeo|umoci/.test(call.argv[0]!))
        .map((call) => [call.argv[0], call.argv.includes('copy') ? 'copy' : call.argv[3], call.exitCode]),
      [
        ['skopeo', 'copy', 0],
        ['umoci', 'unpack', 0],
      ],
      'the skopeo and umoci runs are audited with the request, like runc calls',
    );
    const images = await run('images', '--format', '{{.Repository}}:{{.Tag}}');
    t.match(images.stdout, /^bbload:latest$/m, 'docker images lists it');
    const config = await run(
      'inspect',
      '-f',
      '{{json .Config.Cmd}} {{.Config.WorkingDir}} {{json .Config.Env}}',
      'bbload',
    );
    t.equal(config.stdout.trim(), '["sh","-c","echo default-cmd in $PWD with FOO=$FOO"] /tmp ["FOO=bar"]');

    const byDefault = await run('run', '--rm', 'bbload');
    t.equal(byDefault.code, 0, byDefault.stderr);
    t.equal(
      byDefault.stdout,
      'default-cmd in /tmp with FOO=bar\n',
      "docker run IMAGE runs the image's Cmd, Env and WorkingDir",
    );
    const hi = await run('run', '--rm', 'bbload', 'echo', 'hi');
    t.equal(hi.code, 0, hi.stderr);
    t.equal(hi.stdout, 'hi\n', 'a command given replaces the Cmd');
    const overridden = await run(
      'run',
      '--rm',
      '-e',
      'FOO=mine',
      '-w',
      '/',
      'bbload',
      'sh',
      '-c',
      'echo $FOO $PWD',
    );
    t.equal(overridden.stdout, 'mine /\n', '-e and -w override the image defaults');

    const again = await run('load', '-i', saved);
    t.equal(again.code, 0, again.stderr);
    t.match(
      again.stdout,
      /^The image bbload:latest already exists, renaming the old one with ID sha256:[0-9a-f]{64} to empty string\nLoaded image: bbload:latest\n$/,
    );
    t.equal(
      (await run('images', '-q', 'bbload')).stdout.trim().split('\n').length,
      1,
      'loading again replaces the image of that name',
    );

    const c1 = sandbox.id('c1');
    t.equal((await run('run', '-d', '--name', c1, 'bbload', 'sleep', '1000')).code, 0);
    const inUse = await run('load', '-i', saved);
    t.equal(inUse.code, 1);
    t.match(
      inUse.stderr,
      new RegExp(`cannot load image bbload:latest: the image of that name is used by container ${c1}`),
    );
    t.equal((await run('rm', '-f', c1)).code, 0);

    const gzipped = join(sandbox.dir, 'bbload.tar.gz');
    execFileSync('sh', ['-c', `gzip -c "${saved}" > "${gzipped}"`]);
    const fromGzip = await run('load', '-i', gzipped);
    t.equal(fromGzip.code, 0, fromGzip.stderr);
    t.match(fromGzip.stdout, /Loaded image: bbload:latest\n$/, 'a gzip-compressed archive loads too');

    // The OCI form: a tar of the layout directory, the image named by a full reference in ref.name.
    const entryWork = join(sandbox.dir, 'entry');
    mkdirSync(entryWork);
    const entryLayout = buildOciLayout(entryWork, rootfs, {
      entrypoint: ['echo', 'entry:'],
      cmd: ['from-cmd'],
    });
    const ociSaved = ociArchiveOf(entryLayout, join(sandbox.dir, 'oci.tar'), 'bbload-oci:v1');
    t.notOk(readFileSync(ociSaved).includes('manifest.json'), 'the OCI form has no manifest.json');
    const ociLoaded = await run('load', '-i', ociSaved);
    t.equal(ociLoaded.code, 0, ociLoaded.stderr);
    t.equal(ociLoaded.stdout, 'Loaded image: bbload-oci:v1\n');
    t.equal((await run('run', '--rm', 'bbload-oci:v1')).stdout, 'entry: from-cmd\n', 'Entrypoint + Cmd');
    t.equal(
      (await run('run', '--rm', 'bbload-oci:v1', 'mine')).stdout,
      'entry: mine\n',
      'arguments replace only the Cmd',
    );
    const noEntry = await run('run', '--rm', '--entrypoint', '', 'bbload-oci:v1', 'echo', 'plain');
    t.equal(noEntry.stdout, 'plain\n', '--entrypoint "" clears the Entrypoint');
    const replaced = await run('run', '--rm', '--entrypoint', 'echo', 'bbload-oci:v1');
    t.equal(replaced.stdout, '\n', "an Entrypoint of the caller drops the image's Cmd, as with Docker");

    for (const image of ['bbload', 'bbload-oci:v1']) {
      const removed = await run('rmi', image);
      t.equal(removed.code, 0, removed.stderr);
    }
    t.equal((await run('images', '-q')).stdout, '', 'docker rmi removed both');
    t.equal((await run('ps', '-aq')).stdout, '', 'no container is left');
    t.same(readdirSync(sandbox.bundleRoot), [], 'no bundle and no scratch directory is left');

    const pull = await run('pull', 'busybox');
    t.not(pull.code, 0);
    t.match(pull.stderr, /runcd does not implement pulling images .*docker load.*docker import/);
  },
);

t.test('hostile or broken archives are refused with 4xx, and nothing lands outside the image', async (t) => {
  const sandbox = makeSandbox(t, 'dlbad');
  // 1 MiB rootfs quota: archives may weigh 2 MiB + 16 MiB.
  const daemon = await startInProcess(t, sandbox, { docker: true, maxRootfsBytes: 1024 * 1024 });
  const socketPath = join(sandbox.dir, 'docker.sock');
  await daemon.dockerApp!.listen({ path: socketPath });
  const dockerode = new Docker({ socketPath });
  const load = async (payload: Buffer) => {
    const response = await daemon.dockerApp!.inject({
      method: 'POST',
      url: '/v1.50/images/load?quiet=1',
      headers: { 'content-type': 'application/x-tar' },
      payload,
    });
    return {
      status: response.statusCode,
      message: (response.json() as { message?: string }).message ?? '',
      body: response.body,
    };
  };

  const garbage = await dockerode
    .loadImage(Readable.from([Buffer.from('this is not an archive\n'.repeat(100))]))
    .then(
      () => ({ statusCode: 200, message: '' }),
      (error: { statusCode?: number; message: string }) => error,
    );
  t.match(
    garbage,
    { statusCode: 400, message: /the body is not a tar archive as docker save writes it/ },
    'dockerode: garbage is a 400',
  );
  t.match(await load(Buffer.alloc(0)), { status: 400, message: /the request body is empty/ });

  const notSave = await buildTar([{ header: { name: 'etc/hostname' }, content: 'x\n' }]);
  t.match(await load(notSave), {
    status: 400,
    message: /not one docker save writes: it has neither manifest.json nor an OCI layout .*"etc\/hostname"/,
  });
  const climbing = await buildTar([
    { header: { name: 'manifest.json' }, content: '[]' },
    { header: { name: '../../escaped' }, content: 'x' },
  ]);
  t.match(await load(climbing), {
    status: 400,
    message: /archive entry "\.\.\/\.\.\/escaped" points outside the archive/,
  });
  const badManifest = await buildTar([{ header: { name: 'manifest.json' }, content: '{"not":"a list"}' }]);
  t.match(await load(badManifest), { status: 400, message: /manifest.json is not what docker save writes/ });
  const missingLayers = await buildTar([
    {
      header: { name: 'manifest.json' },
      content: JSON.stringify([{ Config: 'c.json', RepoTags: ['x:latest'], Layers: ['../../etc/passwd'] }]),
    },
  ]);
  t.match(
    await load(missingLayers),
    { status: 400, message: /the archive could not be unpacked: skopeo: / },
    'skopeo refuses a manifest that points at nothing',
  );

  // Layers with a `../` path, an absolute path and a write through a symlink to an absolute host path: umoci
  // resolves all of them inside the image's rootfs.
  const outside = join(sandbox.dir, 'outside');
  mkdirSync(outside);
  const escaping = await buildTar([
    { header: { name: `../../../../..${outside}/dotdot` }, content: 'dotdot' },
    { header: { name: `${outside}/absolute` }, content: 'absolute' },
    { header: { name: 'escape', type: 'symlink', linkname: outside } },
    { header: { name: 'escape/through-symlink' }, content: 'symlink' },
    { header: { name: 'bin', type: 'directory', mode: 0o755 } },
  ]);
  const hostile = await load(
    await handmadeOciArchive(join(sandbox.dir, 'hostile'), escaping, 'hostile:latest'),
  );
  t.equal(hostile.status, 200, hostile.body);
  t.equal(hostile.body, '{"stream":"Loaded image: hostile:latest\\n"}\n');
  t.same(readdirSync(outside), [], 'nothing was written outside the rootfs');
  const image = daemon.bundles
    .list()
    .find((bundle) => bundle.labels['io.runcd.docker.image'] === 'hostile:latest');
  t.ok(image);
  const inside = join(image!.path, 'rootfs', outside);
  t.same(
    readdirSync(inside).sort(),
    ['absolute', 'dotdot', 'through-symlink'],
    'everything landed inside the rootfs',
  );

  const climbingLink = await buildTar([
    { header: { name: 'up', type: 'symlink', linkname: `../../../../../../..${outside}` } },
    { header: { name: 'up/file' }, content: 'x' },
  ]);
  t.match(await load(await handmadeOciArchive(join(sandbox.dir, 'climb'), climbingLink, 'climb:latest')), {
    status: 400,
    message: /symlink "up" points outside the rootfs/,
  });
  t.same(readdirSync(outside), [], 'still nothing outside');

  const tagOnly = await handmadeOciArchive(
    join(sandbox.dir, 'tagonly'),
    await buildTar([{ header: { name: 'f' }, content: 'x' }]),
    'latest',
  );
  t.match(await load(tagOnly), { status: 400, message: /an image without a name/ });

  // 40 MiB of zeros, gzipped to a few KiB: more than the 18 MiB the quota allows once decompressed.
  const bomb = await handmadeOciArchive(
    join(sandbox.dir, 'bomb'),
    await buildTar([{ header: { name: 'zeros' }, content: Buffer.alloc(40 * 1024 * 1024) }]),
    'bomb:latest',
    { gzipLayer: true },
  );
  t.ok(bomb.length < 1024 * 1024, 'the bomb archive itself is small');
  t.match(await load(bomb), { status: 413, message: /layers hold more than \d+ bytes once decompressed/ });
  t.match(
    await load(Buffer.alloc(19 * 1024 * 1024)),
    { status: 413, message: /larger than/ },
    'an archive over the quota',
  );

  t.notOk(
    daemon.bundles
      .list()
      .some((bundle) =>
        ['climb:latest', 'bomb:latest'].includes(bundle.labels['io.runcd.docker.image'] ?? ''),
      ),
    'refused loads make no image',
  );
  t.same(scratchLeft(sandbox.bundleRoot), [], 'every scratch directory is gone, after failures too');
  t.ok(existsSync(image!.path));
});
