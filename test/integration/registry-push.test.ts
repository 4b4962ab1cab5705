import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { dockerCli as docker, startWithDockerSocket } from '../helpers/docker-cli.js';
import { buildOciLayout } from '../helpers/image-archive.js';
import { postForLines } from '../helpers/ndjson.js';
import { TestPki } from '../helpers/pki.js';
import { seed, startRegistry } from '../helpers/registry.js';
import { makeBusyboxRootfs } from '../helpers/rootfs.js';
import { makeSandbox } from '../helpers/sandbox.js';

const scratchLeft = (bundleRoot: string) => readdirSync(bundleRoot).filter((name) => name.startsWith('.'));

/** What the registry holds for a reference: skopeo's view of its config and its manifest digest. */
function remote(reference: string, extra: string[] = ['--tls-verify=false']) {
  const config = JSON.parse(
    execFileSync('skopeo', ['inspect', ...extra, '--config', `docker://${reference}`], { encoding: 'utf8' }),
  ) as { config?: { Cmd?: string[]; Env?: string[]; WorkingDir?: string } };
  const digest = (
    JSON.parse(
      execFileSync('skopeo', ['inspect', ...extra, `docker://${reference}`], { encoding: 'utf8' }),
    ) as {
      Digest: string;
    }
  ).Digest;
  return { config: config.config ?? {}, digest };
}

t.test('docker push, native push, save and load, inspect fields, push errors (plain registry)', async (t) => {
  const sandbox = makeSandbox(t, 'rpush');
  const registry = await startRegistry(t, join(sandbox.dir, 'registry'));
  const rootfs = makeBusyboxRootfs(sandbox.dir);
  const work = join(sandbox.dir, 'image');
  mkdirSync(work);
  const layout = buildOciLayout(work, rootfs, {
    cmd: ['sh', '-c', 'echo pushed cmd in $PWD with FOO=$FOO'],
    env: ['FOO=bar'],
    workingDir: '/tmp',
  });
  seed(registry, layout, 'bb:1');
  const { dockerSocket } = await startWithDockerSocket(t, sandbox, ['--insecure-registry', registry.host]);
  const run = (...args: string[]) => docker(dockerSocket, ...args);
  const expected = 'pushed cmd in /tmp with FOO=bar\n';

  t.equal((await run('pull', `${registry.host}/bb:1`)).code, 0);
  const id = (await run('images', '-q', `${registry.host}/bb:1`)).stdout.trim();
  t.match(id, /^[a-f0-9]{12}$/);
  const target = `${registry.host}/pushed:v1`;
  t.equal((await run('tag', id, target)).code, 0);
  const pushed = await run('push', target);
  t.equal(pushed.code, 0, pushed.stderr);
  t.match(pushed.stdout, `The push refers to repository [${registry.host}/pushed]`);
  t.match(pushed.stdout, /Pushed/, 'the CLI shows the layer pushed');
  const digestLine = /v1: digest: (sha256:[a-f0-9]{64}) size: \d+/.exec(pushed.stdout);
  t.ok(digestLine, 'the CLI prints the digest and size the registry got');
  const inRegistry = remote(target);
  t.equal(inRegistry.digest, digestLine?.[1], 'the registry serves that digest');
  t.same(
    inRegistry.config.Cmd,
    ['sh', '-c', 'echo pushed cmd in $PWD with FOO=$FOO'],
    "the image's Cmd went along",
  );
  t.ok(inRegistry.config.Env?.includes('FOO=bar'));
  t.equal(inRegistry.config.WorkingDir, '/tmp');

  const digests = await run('images', '--digests', '--format', '{{.Repository}}:{{.Tag}} {{.Digest}}');
  t.match(digests.stdout, `${target} ${digestLine?.[1]}`, 'docker images --digests shows the pushed digest');
  const inspected = JSON.parse((await run('image', 'inspect', id)).stdout) as Array<Record<string, unknown>>;
  const fields = inspected[0]!;
  t.same(
    (fields.RepoTags as string[]).sort(),
    [`${registry.host}/bb:1`, target].sort(),
    'RepoTags: both names',
  );
  t.ok(
    (fields.RepoDigests as string[]).includes(`${registry.host}/pushed@${digestLine?.[1]}`),
    'RepoDigests',
  );
  t.ok((fields.RepoDigests as string[]).some((entry) => entry.startsWith(`${registry.host}/bb@sha256:`)));
  t.same((fields.Config as { Cmd: string[] }).Cmd, ['sh', '-c', 'echo pushed cmd in $PWD with FOO=$FOO']);
  t.equal((fields.Config as { WorkingDir: string }).WorkingDir, '/tmp');
  t.ok((fields.Size as number) > 100_000, 'Size is the rootfs bytes');
  t.ok(Number.isFinite(Date.parse(fields.Created as string)), 'Created is a time');

  // docker save, then docker load takes it back (after the image is gone), and skopeo reads both forms.
  const archive = join(sandbox.dir, 'saved.tar');
  const saved = await run('save', '-o', archive, target);
  t.equal(saved.code, 0, saved.stderr);
  const manifest = JSON.parse(
    execFileSync('tar', ['-xOf', archive, 'manifest.json'], { encoding: 'utf8' }),
  ) as Array<{ RepoTags: string[]; Layers: string[]; Config: string }>;
  t.same(manifest[0]!.RepoTags, [target], 'the archive names the image as asked');
  const asDocker = JSON.parse(
    execFileSync('skopeo', ['inspect', '--config', `docker-archive:${archive}`], { encoding: 'utf8' }),
  ) as { config: { Cmd: string[] } };
  t.same(
    asDocker.config.Cmd,
    ['sh', '-c', 'echo pushed cmd in $PWD with FOO=$FOO'],
    "Docker's form reads back",
  );
  const asOci = JSON.parse(
    execFileSync('skopeo', ['inspect', '--config', `oci-archive:${archive}`], { encoding: 'utf8' }),
  ) as { config: { Cmd: string[] } };
  t.same(asOci.config.Cmd, asDocker.config.Cmd, 'the OCI layout in the same archive reads back');
  // By id: every name goes with the image (names with a `/` on DELETE /images are another branch's fix).
  const removed = await run('rmi', id);
  t.equal(removed.code, 0, removed.stderr);
  const loaded = await run('load', '-i', archive);
  t.equal(loaded.code, 0, loaded.stderr);
  t.match(loaded.stdout, `Loaded image: ${target}`);
  t.equal((await run('run', '--rm', target)).stdout, expected, 'the loaded image runs');
  const loadedId = (await run('images', '-q', target)).stdout.trim();
  t.equal((await run('rmi', loadedId)).code, 0);

  // Pull the pushed image back (runcd has no image of that digest any more) and run it.
  const back = await run('pull', target);
  t.equal(back.code, 0, back.stderr);
  t.match(back.stdout, `Digest: ${digestLine?.[1]}`);
  t.equal((await run('run', '--rm', target)).stdout, expected, 'the pushed image, pulled back, runs');
  const both = join(sandbox.dir, 'two.tar');
  t.equal((await run('tag', target, 'local:two')).code, 0);
  const savedTwo = await run('save', '-o', both, 'local:two', target);
  t.equal(savedTwo.code, 0, savedTwo.stderr);
  const twoManifest = JSON.parse(
    execFileSync('tar', ['-xOf', both, 'manifest.json'], { encoding: 'utf8' }),
  ) as Array<{
    RepoTags: string[];
  }>;
  t.equal(twoManifest.length, 1, 'two names of one image: one image in the archive');
  t.same(twoManifest[0]!.RepoTags.sort(), ['local:two', target].sort());

  // Native push: the same image under another reference, NDJSON progress, digest at the end.
  const native = await postForLines(sandbox.socket, '/images/push', {
    image: target,
    reference: `${registry.host}/native:2`,
  });
  t.equal(native.status, 200, JSON.stringify(native.body));
  t.match(native.contentType, /^application\/x-ndjson/);
  t.ok(native.lines.some((line) => line.status === 'Pushed'));
  const nativeResult = native.lines.at(-1)!.image as { name: string; digest: string };
  t.equal(nativeResult.name, `${registry.host}/native:2`);
  t.equal(remote(`${registry.host}/native:2`).digest, nativeResult.digest, 'the registry has it');

  // Errors: each a status and a message naming the image; nothing left behind.
  const missing = await run('push', `${registry.host}/nothing:1`);
  t.not(missing.code, 0);
  t.match(missing.stderr, `An image does not exist locally with the tag: ${registry.host}/nothing`);
  t.equal((await run('tag', target, '127.0.0.1:1/away:1')).code, 0);
  const unreachable = await run('push', '127.0.0.1:1/away:1');
  t.not(unreachable.code, 0);
  t.match(unreachable.stderr, /pushing 127\.0\.0\.1:1\/away:1: the registry is unreachable/);
  const plainName = `${registry.host.replace('127.0.0.1', 'localhost')}/plain:1`;
  t.equal((await run('tag', target, plainName)).code, 0);
  const notListed = await run('push', plainName);
  t.not(notListed.code, 0);
  t.match(notListed.stderr, /plain HTTP; list it with --insecure-registry/);
  const nativeUnreachable = await postForLines(sandbox.socket, '/images/push', {
    image: '127.0.0.1:1/away:1',
  });
  t.equal(nativeUnreachable.status, 502);
  t.equal(nativeUnreachable.body?.code, 'registry_failed');
  t.match(nativeUnreachable.body?.detail, /pushing 127\.0\.0\.1:1\/away:1/);
  const nativeMissing = await postForLines(sandbox.socket, '/images/push', {
    image: `${registry.host}/nothing:1`,
  });
  t.equal(nativeMissing.status, 404);
  t.equal(nativeMissing.body?.code, 'image_not_found');
  const hub = await run('push', 'local:two');
  t.not(hub.code, 0);
  t.match(hub.stderr, /Docker Hub/, 'a name without a registry is never pushed anywhere');
  t.same(scratchLeft(sandbox.bundleRoot), [], 'no scratch directory is left by pushes or saves');
});

/** The docker CLI with its own config directory (where `docker login` keeps what it sends as X-Registry-Auth). */
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

t.test('push to a TLS registry with htpasswd: refused without credentials, pushed with them', async (t) => {
  const sandbox = makeSandbox(t, 'rpushtls');
  const pkiDir = join(sandbox.dir, 'pki');
  mkdirSync(pkiDir);
  const pki = new TestPki(pkiDir);
  pki.ca('registry-ca');
  pki.cert('registry', 'registry-ca', 'subjectAltName=IP:127.0.0.1\n');
  const password = 'hunter2-push-secret';
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
  const layout = buildOciLayout(work, rootfs, { cmd: ['echo', 'secure push'] });
  const archive = join(sandbox.dir, 'bb.tar');
  execFileSync('skopeo', [
    '--insecure-policy',
    'copy',
    '--quiet',
    `oci:${layout}:latest`,
    `docker-archive:${archive}:${registry.host}/secure:1`,
  ]);
  const { dockerSocket, daemon } = await startWithDockerSocket(t, sandbox);
  const configDir = join(sandbox.dir, 'docker-config');
  mkdirSync(configDir);
  const cli = (...args: string[]) => dockerWithConfig(dockerSocket, configDir, ...args);
  t.equal((await cli('load', '-i', archive)).code, 0);
  const image = `${registry.host}/secure:1`;

  const anonymous = await cli('push', image);
  t.not(anonymous.code, 0);
  t.match(anonymous.stderr, `pushing ${image}: the registry refused the credentials`);
  const nativeAnonymous = await postForLines(sandbox.socket, '/images/push', { image });
  t.equal(nativeAnonymous.status, 403);
  t.equal(nativeAnonymous.body?.code, 'registry_denied');

  const login = await cli('login', registry.host, '-u', 'alice', '-p', password);
  t.equal(login.code, 0, login.stderr);
  const pushed = await cli('push', image);
  t.equal(pushed.code, 0, pushed.stderr);
  t.match(pushed.stdout, /1: digest: sha256:[a-f0-9]{64}/);
  const inRegistry = remote(image, ['--cert-dir', certDir, '--creds', `alice:${password}`]);
  t.match(inRegistry.digest, /^sha256:/, 'the TLS registry has the image');
  const nativeWithAuth = await postForLines(sandbox.socket, '/images/push', {
    image,
    reference: `${registry.host}/secure:native`,
    auth: { username: 'alice', password },
  });
  t.equal(nativeWithAuth.status, 200, JSON.stringify(nativeWithAuth.body));

  const mismatch = `${registry.host.replace('127.0.0.1', 'localhost')}/secure:1`;
  t.equal((await cli('tag', image, mismatch)).code, 0);
  const tls = await cli('push', mismatch);
  t.not(tls.code, 0);
  t.match(
    tls.stderr,
    /TLS failure talking to the registry/,
    'a certificate without the name is a TLS failure',
  );

  const audit = readFileSync(join(sandbox.stateDir, 'audit.log'), 'utf8');
  t.notOk(audit.includes(password), 'the password is not in the audit log');
  t.notOk(daemon.output.includes(password), 'nor in the daemon log');
  t.notOk(
    `${anonymous.stderr}${tls.stderr}${JSON.stringify(nativeAnonymous.body)}`.includes(password),
    'nor in any error',
  );
  t.equal(statSync(join(sandbox.stateDir, 'registry-auth.json')).mode & 0o777, 0o600);
  t.same(scratchLeft(sandbox.bundleRoot), [], 'no scratch directory left');
});
