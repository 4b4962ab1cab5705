import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { dockerIdOf } from '../../src/docker/docker-ids.js';
import { withBusyboxImage } from '../helpers/docker-image.js';

// docker rename (issue 17): a Docker name apart from the runc id, resolvable wherever a name is, kept across
// restarts; and docker-compose's re-creation of a changed service, which renames the old container first.

t.test('docker rename: the new name is the one shown and resolved; the old one is free', async (t) => {
  const setup = await withBusyboxImage(t, 'dren');
  const { sandbox } = setup;
  const run = (...args: string[]) => setup.run(...args);
  const before = sandbox.id('before');
  const after = sandbox.id('after');
  t.equal((await run('run', '-d', '--name', before, 'bb', 'sleep', '1000')).code, 0);
  const id = (await run('inspect', '-f', '{{.Id}}', before)).stdout.trim();
  t.equal(id, dockerIdOf(before));

  const renamed = await run('rename', before, after);
  t.equal(renamed.code, 0, renamed.stderr);
  t.equal(
    (await run('inspect', '-f', '{{.Name}} {{.Id}}', after)).stdout.trim(),
    `/${after} ${id}`,
    'same container',
  );
  t.match(
    (await run('ps', '--format', '{{.Names}}')).stdout,
    new RegExp(`^${after}$`, 'm'),
    'docker ps shows it',
  );
  t.equal(
    (await run('ps', '-q', '--no-trunc', '--filter', `name=${after}`)).stdout.trim(),
    id,
    'filters see it',
  );
  t.equal((await run('exec', after, 'echo', 'hi')).stdout, 'hi\n', 'exec by the new name');
  const old = await run('inspect', before);
  t.not(old.code, 0, 'the old name no longer resolves');
  t.match(old.stderr, /No such object|No such container/);

  // The old name is free: a new container takes it (its runc id cannot be the name, which is still taken).
  const fresh = await run('create', '--name', before, 'bb', 'true');
  t.equal(fresh.code, 0, fresh.stderr);
  t.not((await run('inspect', '-f', '{{.Id}}', before)).stdout.trim(), id, 'a different container');

  const clash = await run('rename', after, before);
  t.not(clash.code, 0, 'a name in use is refused');
  t.match(clash.stderr, /is already in use by container/);
  const bad = await run('rename', after, 'bad/name');
  t.not(bad.code, 0);
  t.match(bad.stderr, /Invalid container name/);

  await setup.restart('SIGKILL');
  t.equal(
    (await setup.run('inspect', '-f', '{{.Name}}', after)).stdout.trim(),
    `/${after}`,
    'the name survives a runcd restart',
  );
  t.equal((await setup.run('rm', '-f', after, before)).code, 0, 'removed by name');
  const third = await setup.run('create', '--name', after, 'bb', 'true');
  t.equal(third.code, 0, "a deleted container's name is free again");
});

function compose(project: string, socket: string, ...args: string[]) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      'docker-compose',
      ['-p', 'dren', '--ansi', 'never', ...args],
      { env: { ...process.env, DOCKER_HOST: `unix://${socket}` }, timeout: 120_000, cwd: project },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }),
    );
  });
}

const composeFile = (message: string) => `version: "3"
services:
  web:
    image: bb
    network_mode: none
    command: sh -c 'echo ${message}; exec sleep 1000'
`;

t.test('docker-compose up -d re-creates a changed service', async (t) => {
  const { sandbox, dockerSocket, run } = await withBusyboxImage(t, 'dcre');
  const project = join(sandbox.dir, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'docker-compose.yml'), composeFile('first-version'));
  t.teardown(() => compose(project, dockerSocket, 'down'));
  const first = await compose(project, dockerSocket, 'up', '-d');
  t.equal(first.code, 0, first.stderr);
  const firstId = (await run('inspect', '-f', '{{.Id}}', 'dren_web_1')).stdout.trim();

  writeFileSync(join(project, 'docker-compose.yml'), composeFile('second-version'));
  const second = await compose(project, dockerSocket, 'up', '-d');
  t.equal(second.code, 0, second.stderr);
  t.match(second.stderr, /Recreating dren_web_1/);
  const now = await run('inspect', '-f', '{{.Id}} {{.State.Status}}', 'dren_web_1');
  const [secondId, status] = now.stdout.trim().split(' ');
  t.not(secondId, firstId, 'a new container under the same name');
  t.equal(status, 'running');
  const logs = await compose(project, dockerSocket, 'logs', '--no-color');
  t.match(logs.stdout, /second-version/, 'running the changed command');
  t.equal((await run('ps', '-aq')).stdout.trim().split('\n').length, 1, 'the old container was removed');
  const down = await compose(project, dockerSocket, 'down');
  t.equal(down.code, 0, down.stderr);
  t.equal((await run('ps', '-aq')).stdout.trim(), '');
});
