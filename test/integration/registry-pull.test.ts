import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import t, { type Test } from 'tap';
import { buildOciLayout } from '../helpers/image-archive.js';
import { dockerCli as docker, startWithDockerSocket } from '../helpers/docker-cli.js';
import { TestPki } from '../helpers/pki.js';
import { seed, startRegistry } from '../helpers/registry.js';
import { makeBusyboxRootfs } from '../helpers/rootfs.js';
import { eventually, makeSandbox } from '../helpers/sandbox.js';

/** A second layer over image `latest` of a layout: adds /etc/layer2 and deletes /etc/motd-one (a whiteout). */
function addLayer(layout: string, work: string): void {
  const unpacked = join(work, 'second');
  const run = (...args: string[]) => execFileSync('umoci', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  run('unpack', '--image', `${layout}:latest`, unpacked);
  writeFileSync(join(unpacked, 'rootfs', 'etc', 'layer2'), 'from layer two\n');
  rmSync(join(unpacked, 'rootfs', 'etc', 'motd-one'));
  run('repack', '--image', `${layout}:latest`, unpacked);
}

function auditedTools(stateDir: string, route: string): string[][] {
  return readFileSync(join(stateDir, 'audit.log'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { route?: string; runtime?: Array<{ argv: string[] }> })
    .filter((entry) => entry.route === route)
    .map((entry) =>
      (entry.runtime ?? [])
        .filter((call) => /skopeo|umoci/.test(call.argv[0]!))
        .map(
          (call) => `${call.argv[0]} ${call.argv.find((arg) => ['copy', 'inspect', 'unpack'].includes(arg))}`,
        ),
    );
}

/** The n-th audited pull's tool runs, once the audit log has it (it is written as the answer ends). */
function nthPull(stateDir: string, n: number): Promise<string[]> {
  return eventually(async () => auditedTools(stateDir, '/images/create')[n]);
}

t.test('docker pull from a loopback registry: progress, run, re-pull, shared tags, errors', async (t) => {
  const sandbox = makeSandbox(t, 'rpull');
  const registry = await startRegistry(t, join(sandbox.dir, 'registry'));
  const rootfs = makeBusyboxRootfs(sandbox.dir);
  mkdirSync(join(rootfs, 'etc'), { recursive: true });
  writeFileSync(join(rootfs, 'etc', 'motd-one'), 'from layer one\n');
  const work = join(sandbox.dir, 'image');
  mkdirSync(work);
  const layout = buildOciLayout(work, rootfs, {
    cmd: ['sh', '-c', 'echo pulled cmd in $PWD with FOO=$FOO'],
    env: ['FOO=bar'],
    workingDir: '/tmp',
  });
  seed(registry, layout, 'bb:1');
  seed(registry, layout, 'bb:2');
  addLayer(layout, work);
  seed(registry, layout, 'multi:1');

  const { dockerSocket } = await startWithDockerSocket(t, sandbox, ['--insecure-registry', registry.host]);
  const run = (...args: string[]) => docker(dockerSocket, ...args);
  const bb1 = `${registry.host}/bb:1`;

  const pulled = await run('pull', bb1);
  t.equal(pulled.code, 0, pulled.stderr);
  t.match(pulled.stdout, /Pull complete/, 'the CLI shows the layer progress');
  t.match(pulled.stdout, /Digest: sha256:[a-f0-9]{64}/);
  t.match(pulled.stdout, `Status: Downloaded newer image for ${bb1}`);
  t.same(
    await nthPull(sandbox.stateDir, 0),
    ['skopeo copy', 'umoci unpack'],
    'the manifest comes from runcd itself',
  );

  const ran = await run('run', '--rm', bb1);
  t.equal(ran.code, 0, ran.stderr);
  t.equal(
    ran.stdout,
    'pulled cmd in /tmp with FOO=bar\n',
    "docker run uses the pulled image's Cmd, Env, WorkingDir",
  );

  const again = await run('pull', bb1);
  t.equal(again.code, 0, again.stderr);
  t.match(again.stdout, `Status: Image is up to date for ${bb1}`);
  t.same(await nthPull(sandbox.stateDir, 1), [], 'a re-pull runs no tool and downloads no layer');

  const second = await run('pull', `${registry.host}/bb:2`);
  t.equal(second.code, 0, second.stderr);
  t.same(await nthPull(sandbox.stateDir, 2), [], 'a tag of a present digest copies nothing');
  const listed = await run('images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}');
  const lines = listed.stdout.trim().split('\n').sort();
  t.equal(lines.length, 2, listed.stdout);
  t.equal(lines[0]!.split(' ')[1], lines[1]!.split(' ')[1], 'both tags are one image');
  t.equal(readdirSync(sandbox.bundleRoot).length, 1, 'one bundle (one rootfs) serves both tags');
  // Names with a `/` on the image routes (inspect, tag, rmi NAME) are another branch's fix; by id and by a
  // slash-free name they work here.
  const id = lines[0]!.split(' ')[1]!;
  const digests = await run('images', '--digests', '--format', '{{.Repository}}@{{.Digest}}');
  t.match(
    digests.stdout,
    new RegExp(`${registry.host}/bb@sha256:[a-f0-9]{64}`),
    'docker images shows the digest',
  );

  const tagged = await run('tag', id, 'copy:v1');
  t.equal(tagged.code, 0, tagged.stderr);
  t.equal((await run('run', '--rm', 'copy:v1', 'echo', 'tagged')).stdout, 'tagged\n');
  // `run --rm` removes its container's private bundle as the container exits, a moment after the CLI returns.
  await eventually(async () => (readdirSync(sandbox.bundleRoot).length === 1 ? true : undefined));
  t.equal(readdirSync(sandbox.bundleRoot).length, 1, 'docker tag shares the rootfs too');
  const inspected = await run('inspect', '-f', '{{json .RepoTags}}', id);
  t.same(JSON.parse(inspected.stdout).sort(), [bb1, `${registry.host}/bb:2`, 'copy:v1'].sort());

  const untag = await run('rmi', 'copy:v1');
  t.equal(untag.code, 0, untag.stderr);
  t.equal(untag.stdout, 'Untagged: copy:v1\n', 'rmi of one name of several only untags');
  t.equal((await run('run', '--rm', bb1, 'echo', 'still')).stdout, 'still\n', 'the other tags still run');

  const multi = await run('pull', `${registry.host}/multi:1`);
  t.equal(multi.code, 0, multi.stderr);
  t.equal((multi.stdout.match(/Pull complete/g) ?? []).length, 2, 'two layers, two progress lines');
  const layered = await run(
    'run',
    '--rm',
    `${registry.host}/multi:1`,
    'sh',
    '-c',
    'cat /etc/layer2; ls /etc/motd-one || echo gone',
  );
  t.match(layered.stdout, /from layer two\n/);
  t.match(layered.stdout, /gone\n/, 'the whiteout of the second layer removed the file');

  const multiId = (await run('images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}')).stdout
    .split('\n')
    .find((line) => line.startsWith(`${registry.host}/multi:1 `))!
    .split(' ')[1]!;
  t.equal((await run('tag', multiId, 'moving:x')).code, 0);
  t.equal((await run('tag', id, 'moving:x')).code, 0);
  const moved = await run('images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}');
  t.same(
    moved.stdout.split('\n').filter((line) => line.startsWith('moving:x ')),
    [`moving:x ${id}`],
    'a name tagged onto another image moves there; the old image keeps its other names',
  );
  t.match(moved.stdout, `${registry.host}/multi:1 ${multiId}`);

  const dockerode = new Docker({ socketPath: dockerSocket });
  const events = await new Promise<Array<{ status?: string }>>((resolve, reject) => {
    void dockerode.pull(
      `${registry.host}/bb:2`,
      {},
      (error: unknown, stream: NodeJS.ReadableStream | undefined) => {
        if (error || !stream) return reject(error as Error);
        dockerode.modem.followProgress(stream, (done: unknown, output: Array<{ status?: string }>) =>
          done ? reject(done as Error) : resolve(output),
        );
      },
    );
  });
  t.ok(
    events.some((event) => event.status?.startsWith('Status: ')),
    'dockerode followProgress sees the final status',
  );

  const unknownTag = await run('pull', `${registry.host}/bb:nope`);
  t.not(unknownTag.code, 0);
  t.match(unknownTag.stderr, `pulling ${registry.host}/bb:nope: no such image or tag in the registry`);
  const unknownImage = await run('pull', `${registry.host}/nothing:1`);
  t.not(unknownImage.code, 0);
  t.match(unknownImage.stderr, /nothing:1: no such image or tag/);
  const unreachable = await run('pull', '127.0.0.1:1/bb:1');
  t.not(unreachable.code, 0);
  t.match(unreachable.stderr, /127\.0\.0\.1:1\/bb:1: the registry is unreachable/);
  const notListed = await run('pull', `${registry.host.replace('127.0.0.1', 'localhost')}/bb:1`);
  t.not(notListed.code, 0);
  t.match(notListed.stderr, /plain HTTP; list it with --insecure-registry/);
  const hub = await run('pull', 'busybox');
  t.not(hub.code, 0);
  t.match(hub.stderr, /Docker Hub/, 'a name without a registry never leaves the machine');
  t.same(
    readdirSync(sandbox.bundleRoot).filter((name) => name.startsWith('.')),
    [],
    'no scratch directory is left by pulls, failed or not',
  );
});

/** A registry that serves a manifest, then stalls on every blob: a pull that can only end by cancellation. */
async function stallingRegistry(t: Test): Promise<{ host: string; blobRequested: Promise<void> }> {
  const hex = (seed: string) => createHash('sha256').update(seed).digest('hex');
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${hex('c')}`, size: 2 },
    layers: [
      {
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: `sha256:${hex('l')}`,
        size: 1 << 30,
      },
    ],
  });
  let blobRequested!: () => void;
  const requested = new Promise<void>((resolve) => (blobRequested = resolve));
  const held = new Set<import('node:http').ServerResponse>();
  const server = createServer((request, response) => {
    if (request.url === '/v2/')
      return response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    if (request.url?.includes('/manifests/')) {
      return response
        .writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' })
        .end(request.method === 'HEAD' ? undefined : manifest);
    }
    blobRequested();
    held.add(response);
    response.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': String(1 << 30),
    });
    response.write(Buffer.alloc(1024));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const response of held) response.destroy();
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const address = server.address() as AddressInfo;
  return { host: `127.0.0.1:${address.port}`, blobRequested: requested };
}

/** Processes whose command line mentions `needle` (skopeo runs with the scratch directory in its argv). */
function processesMentioning(needle: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle);
      } catch {
        return false;
      }
    })
    .map(Number);
}

t.test(
  'closing the connection cancels a pull: skopeo is killed and its scratch directory removed',
  async (t) => {
    const sandbox = makeSandbox(t, 'rcancel');
    const stalling = await stallingRegistry(t);
    const { dockerSocket } = await startWithDockerSocket(t, sandbox, ['--insecure-registry', stalling.host]);
    await eventually(async () => (existsSync(dockerSocket) ? true : undefined));
    const request = httpRequest({
      socketPath: dockerSocket,
      method: 'POST',
      path: `/v1.50/images/create?fromImage=${encodeURIComponent(`${stalling.host}/slow`)}&tag=1`,
    });
    const started = new Promise<{ status: number | undefined; first: string }>((resolve, reject) => {
      request.on('response', (response) => {
        response.once('data', (chunk: Buffer) =>
          resolve({ status: response.statusCode, first: chunk.toString() }),
        );
      });
      request.on('error', reject);
    });
    request.end();
    const answer = await started;
    t.equal(answer.status, 200, 'the progress stream started');
    t.match(answer.first, /Pulling from slow/);
    await stalling.blobRequested;
    t.ok(processesMentioning(`${stalling.host}/slow@sha256:`).length > 0, 'skopeo is copying');
    request.destroy();
    await eventually(
      async () => (processesMentioning(`${stalling.host}/slow@sha256:`).length === 0 ? true : undefined),
      10_000,
    );
    t.pass('skopeo is gone once the client went away');
    await eventually(async () => (readdirSync(sandbox.bundleRoot).length === 0 ? true : undefined), 10_000);
    t.same(readdirSync(sandbox.bundleRoot), [], 'no scratch directory and no image is left');
  },
);

/** The docker CLI with its own config directory (where `docker login` stores what it sends as X-Registry-Auth). */
function dockerWithConfig(socket: string, configDir: string, ...args: string[]) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      'docker',
      args,
      {
        env: { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: configDir },
        timeout: 120_000,
      },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }),
    );
  });
}

t.test(
  'a TLS registry with htpasswd: login checks the credentials, pull sends them, TLS failures are 502',
  async (t) => {
    const sandbox = makeSandbox(t, 'rtls');
    const pkiDir = join(sandbox.dir, 'pki');
    mkdirSync(pkiDir);
    const pki = new TestPki(pkiDir);
    pki.ca('registry-ca');
    pki.cert('registry', 'registry-ca', 'subjectAltName=IP:127.0.0.1\n');
    const password = 'hunter2-pull-secret';
    const htpasswd = join(sandbox.dir, 'htpasswd');
    writeFileSync(htpasswd, execFileSync('htpasswd', ['-Bbn', 'alice', password]));
    const registry = await startRegistry(t, join(sandbox.dir, 'registry'), {
      tls: { cert: pki.path('registry.pem'), key: pki.path('registry.key') },
      htpasswd,
    });
    const certDir = join(sandbox.stateDir, 'certs.d', registry.host);
    mkdirSync(certDir, { recursive: true });
    copyFileSync(pki.path('registry-ca.pem'), join(certDir, 'ca.crt'));
    const rootfs = makeBusyboxRootfs(sandbox.dir);
    const work = join(sandbox.dir, 'image');
    mkdirSync(work);
    const layout = buildOciLayout(work, rootfs, { cmd: ['echo', 'secure'] });
    seed(registry, layout, 'bb:1', { certDir, creds: `alice:${password}` });

    const { dockerSocket, daemon } = await startWithDockerSocket(t, sandbox);
    const configDir = join(sandbox.dir, 'docker-config');
    mkdirSync(configDir);
    const cli = (...args: string[]) => dockerWithConfig(dockerSocket, configDir, ...args);
    const image = `${registry.host}/bb:1`;

    const anonymous = await cli('pull', image);
    t.not(anonymous.code, 0);
    t.match(anonymous.stderr, `pulling ${image}: the registry refused the credentials`);

    const wrong = await cli('login', registry.host, '-u', 'alice', '-p', 'wrong-password');
    t.not(wrong.code, 0, 'a wrong password is refused at login');
    t.match(wrong.stderr, /refused the credentials/);

    const login = await cli('login', registry.host, '-u', 'alice', '-p', password);
    t.equal(login.code, 0, login.stderr);
    t.match(login.stdout, /Login Succeeded/);
    const stored = join(sandbox.stateDir, 'registry-auth.json');
    t.equal(statSync(stored).mode & 0o777, 0o600, 'runcd keeps the credentials with mode 0600');

    const pulled = await cli('pull', image);
    t.equal(pulled.code, 0, pulled.stderr);
    t.equal((await cli('run', '--rm', image)).stdout, 'secure\n');

    const mismatch = await cli('pull', `${registry.host.replace('127.0.0.1', 'localhost')}/bb:1`);
    t.not(mismatch.code, 0);
    t.match(
      mismatch.stderr,
      /TLS failure talking to the registry/,
      'a certificate without the name is a TLS failure',
    );

    const audit = readFileSync(join(sandbox.stateDir, 'audit.log'), 'utf8');
    t.notOk(audit.includes(password), 'the password is not in the audit log');
    t.notOk(daemon.output.includes(password), 'nor in the daemon log');
    t.notOk(`${anonymous.stderr}${wrong.stderr}${mismatch.stderr}`.includes(password), 'nor in any error');
    t.same(
      readdirSync(sandbox.bundleRoot).filter((name) => name.startsWith('.')),
      [],
      'no scratch directory left',
    );
  },
);
