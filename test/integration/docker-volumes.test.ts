import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { withBusyboxImage } from '../helpers/docker-image.js';

// Named volumes (issue 17): directories runcd owns in its state directory, outliving their containers, 409 on
// removal while in use; through the docker CLI and docker-compose's `volumes:`.

t.test('docker volume create, ls, inspect, rm; -v NAME:/path shares data between containers', async (t) => {
  const setup = await withBusyboxImage(t, 'dvol');
  const { sandbox } = setup;
  const run = (...args: string[]) => setup.run(...args);
  const created = await run('volume', 'create', '--label', 'team=db', 'data1');
  t.equal(created.code, 0, created.stderr);
  t.equal(created.stdout.trim(), 'data1');
  const listed = await run('volume', 'ls', '--format', '{{.Name}} {{.Driver}}');
  t.match(listed.stdout, /^data1 local$/m);
  t.equal((await run('volume', 'ls', '-q', '--filter', 'label=team=other')).stdout.trim(), '');
  const mountpoint = (await run('volume', 'inspect', '-f', '{{.Mountpoint}}', 'data1')).stdout.trim();
  t.equal(mountpoint, join(sandbox.stateDir, 'volumes', 'data1', '_data'), 'a directory in the state dir');

  const writer = await run('run', '--rm', '-v', 'data1:/data', 'bb', 'sh', '-c', 'echo kept > /data/file');
  t.equal(writer.code, 0, writer.stderr);
  const reader = await run('run', '--rm', '-v', 'data1:/data:ro', 'bb', 'cat', '/data/file');
  t.equal(reader.stdout, 'kept\n', 'the data outlives the container that wrote it');
  const readOnly = await run('run', '--rm', '-v', 'data1:/data:ro', 'bb', 'touch', '/data/other');
  t.not(readOnly.code, 0, ':ro mounts it read-only');

  // A name that does not exist yet is made, as Docker does; --mount type=volume too.
  const auto = await run('run', '--rm', '--mount', 'type=volume,src=auto1,dst=/v', 'bb', 'touch', '/v/x');
  t.equal(auto.code, 0, auto.stderr);
  t.equal((await run('volume', 'inspect', '-f', '{{.Name}}', 'auto1')).stdout.trim(), 'auto1');

  const user = sandbox.id('user');
  t.equal((await run('create', '--name', user, '-v', 'data1:/data', 'bb', 'true')).code, 0);
  const busy = await run('volume', 'rm', 'data1');
  t.not(busy.code, 0, 'a volume a container mounts is not removed');
  t.match(busy.stderr, new RegExp(`volume is in use - \\[${user}\\]`));
  t.equal((await run('rm', user)).code, 0);
  t.equal((await run('volume', 'rm', 'data1', 'auto1')).code, 0);
  t.notOk(existsSync(join(sandbox.stateDir, 'volumes', 'data1')), 'its directory is gone');
  const gone = await run('volume', 'inspect', 'data1');
  t.not(gone.code, 0);
  t.match(gone.stderr, /no such volume/);
  const bad = await run('volume', 'create', '--driver', 'nfs', 'x1');
  t.not(bad.code, 0, 'another driver is refused');
  t.match(bad.stderr, /volume driver nfs/);

  t.equal((await run('volume', 'create', 'survivor')).code, 0);
  await setup.restart('SIGKILL');
  t.equal((await setup.run('volume', 'ls', '-q')).stdout.trim(), 'survivor', 'volumes survive a restart');
  t.equal((await setup.run('volume', 'rm', 'survivor')).code, 0);
});

function compose(project: string, socket: string, ...args: string[]) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      'docker-compose',
      ['-p', 'dvolc', '--ansi', 'never', ...args],
      { env: { ...process.env, DOCKER_HOST: `unix://${socket}` }, timeout: 120_000, cwd: project },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }),
    );
  });
}

const COMPOSE_FILE = `version: "3"
services:
  web:
    image: bb
    network_mode: none
    command: sh -c 'date >> /store/starts; exec sleep 1000'
    volumes:
      - store:/store
volumes:
  store: {}
`;

t.test('docker-compose: a project whose service uses a named volume', async (t) => {
  const { sandbox, dockerSocket, run } = await withBusyboxImage(t, 'dvolc');
  const project = join(sandbox.dir, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'docker-compose.yml'), COMPOSE_FILE);
  t.teardown(() => compose(project, dockerSocket, 'down', '-v'));
  const up = await compose(project, dockerSocket, 'up', '-d');
  t.equal(up.code, 0, up.stderr);
  t.match((await run('volume', 'ls', '-q')).stdout, /^dvolc_store$/m, 'compose made its volume');
  for (const command of ['stop', 'start', 'restart', 'pause', 'unpause']) {
    const ran = await compose(project, dockerSocket, command);
    t.equal(ran.code, 0, `compose ${command}: ${ran.stderr}`);
  }
  const starts = await run('exec', 'dvolc_web_1', 'wc', '-l', '/store/starts');
  t.match(starts.stdout, /^\s*3 /, 'three starts (up, start, restart) written to the volume');
  const down = await compose(project, dockerSocket, 'down');
  t.equal(down.code, 0, down.stderr);
  t.match((await run('volume', 'ls', '-q')).stdout, /^dvolc_store$/m, 'down keeps the volume');
  const again = await compose(project, dockerSocket, 'up', '-d');
  t.equal(again.code, 0, again.stderr);
  const kept = await run('exec', 'dvolc_web_1', 'wc', '-l', '/store/starts');
  t.match(kept.stdout, /^\s*4 /, 'a new container of the service finds what the old one wrote');
  const downV = await compose(project, dockerSocket, 'down', '-v');
  t.equal(downV.code, 0, downV.stderr);
  t.equal((await run('volume', 'ls', '-q')).stdout.trim(), '', 'down -v removes it');
});
