import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, type Duplex } from 'node:stream';
import Docker from 'dockerode';
import t from 'tap';
import { dockerIdOf } from '../../src/docker/docker-ids.js';
import { makeBusyboxRootfs, tarball } from '../helpers/rootfs.js';
import { issueToken } from '../../src/security/tokens.js';
import { DaemonProcess, makeSandbox, startInProcess } from '../helpers/sandbox.js';

/** Splits Docker's multiplexed stream into stdout and stderr text, as dockerode's users do. */
async function demultiplex(
  docker: Docker,
  stream: NodeJS.ReadableStream,
): Promise<{ out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let outText = '';
  let errText = '';
  out.on('data', (chunk: Buffer) => (outText += chunk.toString()));
  err.on('data', (chunk: Buffer) => (errText += chunk.toString()));
  docker.modem.demuxStream(stream, out, err);
  await new Promise((resolve) => stream.on('end', resolve));
  return { out: outText, err: errText };
}

async function execIn(
  docker: Docker,
  container: Docker.Container,
  cmd: string[],
  hijack: boolean,
): Promise<{ out: string; err: string; exitCode: number | null }> {
  const exec = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = (await exec.start(hijack ? { hijack: true, stdin: false } : {})) as Duplex;
  const output = await demultiplex(docker, stream);
  const inspected = await exec.inspect();
  return { ...output, exitCode: inspected.ExitCode };
}

/** The HTTP status and message dockerode rejected with (it rejects on any non-2xx answer). */
async function failure(promise: Promise<unknown>): Promise<{ statusCode: unknown; message: string }> {
  try {
    await promise;
  } catch (error) {
    const { statusCode, message } = error as { statusCode?: unknown; message: string };
    return { statusCode, message };
  }
  throw new Error('expected dockerode to reject');
}

t.test('dockerode drives runcd containers through --docker-socket', async (t) => {
  const sandbox = makeSandbox(t, 'dode');
  const socketPath = join(sandbox.dir, 'docker.sock');
  const daemon = new DaemonProcess(sandbox, ['--docker-socket', socketPath]);
  await daemon.start();
  t.teardown(() => daemon.close());
  const docker = new Docker({ socketPath });

  t.equal(String(await docker.ping()), 'OK');
  const version = await docker.version();
  t.match(version, { ApiVersion: '1.50', MinAPIVersion: '1.41', Os: 'linux' });
  const versioned = new Docker({ socketPath, version: 'v1.41' });
  t.equal(String(await versioned.ping()), 'OK', 'the oldest supported version prefix answers');
  const tooOld = new Docker({ socketPath, version: 'v1.24' });
  t.match(await failure(tooOld.listContainers()), { statusCode: 400, message: /too old/ });

  const id = sandbox.id('c1');
  const created = await daemon.request('POST', '/containers', {
    id,
    bundle: sandbox.bundle('chatty', ['sh', '-c', 'echo hello-from-init; exec sleep 1000']),
    start: true,
  });
  t.equal(created.status, 201);

  const listed = await docker.listContainers();
  t.match(listed, [{ Id: dockerIdOf(id), Names: [`/${id}`], State: 'running', Command: /sleep 1000/ }]);
  const byName = await docker.listContainers({ filters: { name: [id] } });
  t.equal(byName.length, 1);
  t.same(await docker.listContainers({ filters: { status: ['exited'] } }), []);

  const container = docker.getContainer(id);
  const inspected = await container.inspect();
  t.match(inspected, { Id: dockerIdOf(id), Name: `/${id}`, State: { Status: 'running', Running: true } });
  t.ok(inspected.State.Pid > 0);

  const hijacked = await execIn(docker, container, ['sh', '-c', 'echo out; echo err >&2; exit 5'], true);
  t.same(hijacked, { out: 'out\n', err: 'err\n', exitCode: 5 }, 'exec over an upgraded connection');
  const plain = await execIn(docker, container, ['ps'], false);
  t.equal(plain.exitCode, 0);
  t.match(plain.out, /^\s*1\s+\S+\s+sleep 1000$/m, 'exec over a plain response: sleep is PID 1');

  const logs = (await container.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
  t.equal(logs.subarray(8).toString(), 'hello-from-init\n', 'logs come in 8-byte frames');
  t.equal(logs[0], 1, 'stream 1: stdout');
  t.equal(logs.readUInt32BE(4), 'hello-from-init\n'.length);

  const top = await container.top();
  t.match(top, { Titles: ['UID', 'PID', 'PPID', 'STAT', 'CMD'] });
  t.ok(top.Processes.some((row: string[]) => row.includes('sleep 1000')));

  await container.pause();
  t.equal((await container.inspect()).State.Paused, true);
  await container.unpause();
  t.match(await failure(container.start()), { statusCode: 304 }, 'already started: 304');

  const since = Math.floor(Date.now() / 1000) - 1;
  const waited = container.wait();
  await container.stop({ t: 1 });
  t.match(await waited, { StatusCode: 137 }, 'wait answers when the container stops');
  t.match(await failure(container.stop()), { statusCode: 304 }, 'already stopped: 304');
  t.match(await failure(container.kill()), { statusCode: 409 });

  const events = (await docker.getEvents({
    since,
    until: Math.ceil(Date.now() / 1000) + 1,
    filters: { event: ['die'] },
  })) as NodeJS.ReadableStream;
  let text = '';
  for await (const chunk of events) text += String(chunk);
  const lines = text
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { Action: string; id: string });
  t.match(lines, [
    { Action: 'die', id: dockerIdOf(id), Actor: { Attributes: { name: id, exitCode: '137' } } },
  ]);

  await container.remove();
  t.match(await failure(container.inspect()), { statusCode: 404, message: /No such container/ });
  t.match(await failure(docker.getContainer('0000').inspect()), { statusCode: 404 });
  t.match(await failure(docker.createContainer({ Image: 'bb', Cmd: ['true'] })), {
    statusCode: 404,
    message: /No such image: bb/,
  });

  // docker import, then create, start and wait on a container of that image.
  const archive = join(sandbox.dir, 'busybox.tar');
  writeFileSync(archive, tarball(makeBusyboxRootfs(sandbox.dir)));
  const importing = (await docker.importImage(archive, { repo: 'bb' })) as NodeJS.ReadableStream;
  let progress = '';
  for await (const chunk of importing) progress += String(chunk);
  t.match(progress, /"status":"sha256:[0-9a-f]{64}"/);
  t.match(await docker.listImages(), [{ RepoTags: ['bb:latest'] }]);
  const made = await docker.createContainer({
    name: sandbox.id('from-image'),
    Image: 'bb',
    Cmd: ['sh', '-c', 'echo made; exit 7'],
    Labels: { origin: 'dockerode' },
    HostConfig: { Memory: 64 * 1024 * 1024, PidsLimit: 32 },
  });
  const exited = made.wait({ condition: 'next-exit' });
  await made.start();
  t.match(await exited, { StatusCode: 7 });
  const madeLogs = (await made.logs({ stdout: true, stderr: true })) as unknown as Buffer;
  t.equal(madeLogs.subarray(8).toString(), 'made\n');
  t.match(await made.inspect(), { Config: { Image: 'bb:latest', Labels: { origin: 'dockerode' } } });
  await made.remove();
  await docker.getImage('bb').remove();
  t.same(await docker.listImages(), []);
});

t.test('with --require-token the Docker socket wants a token too, with the same scopes', async (t) => {
  const sandbox = makeSandbox(t, 'dauth');
  const daemon = await startInProcess(t, sandbox, { docker: true, requireToken: true });
  const socketPath = join(sandbox.dir, 'docker.sock');
  await daemon.dockerApp!.listen({ path: socketPath });
  const reader = issueToken(daemon.tokens, 'reader', 'read');
  const admin = issueToken(daemon.tokens, 'admin', 'admin');
  const as = (secret?: string) =>
    new Docker({ socketPath, ...(secret ? { headers: { Authorization: `Bearer ${secret}` } } : {}) });

  t.match(await failure(as().listContainers()), { statusCode: 401, message: /bearer token is required/ });
  t.match(await failure(as('rcd_wrong').listContainers()), { statusCode: 401, message: /not valid/ });
  t.same(await as(reader).listContainers(), [], 'a read token lists');
  t.match(await failure(as(reader).getContainer('x').remove()), {
    statusCode: 403,
    message: /scope "read"; DELETE \/containers\/:id needs "admin"/,
  });
  t.match(await failure(as(admin).getContainer('x').remove()), { statusCode: 404 }, 'admin gets past auth');
});
