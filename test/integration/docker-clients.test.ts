import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import t from 'tap';
import { makeBusyboxRootfs, tarball } from '../helpers/rootfs.js';
import { dockerCli, startWithDockerSocket } from '../helpers/docker-cli.js';
import { eventually, makeSandbox, type Sandbox } from '../helpers/sandbox.js';

// Docker's other clients, as their users write them: docker-py (Debian's python3-docker) and docker-compose
// (Debian's 1.29, itself built on docker-py). Debian's own python, so a pyenv or pip copy does not stand in.
const PYTHON = '/usr/bin/python3';

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function runClient(command: string, args: string[], socket: string, cwd?: string): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { env: { ...process.env, DOCKER_HOST: `unix://${socket}` }, timeout: 120_000, cwd },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Busybox images under these names in runcd, with an /etc/passwd and /etc/group (for `--user NAME`). */
async function importImage(sandbox: Sandbox, socket: string, ...names: string[]): Promise<void> {
  const rootfs = makeBusyboxRootfs(sandbox.dir);
  mkdirSync(join(rootfs, 'etc'), { recursive: true });
  writeFileSync(
    join(rootfs, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\n',
  );
  writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\napps:x:1001:\n');
  const archive = join(sandbox.dir, 'image.tar');
  writeFileSync(archive, tarball(rootfs));
  for (const name of names) {
    const imported = await dockerCli(socket, 'import', archive, name);
    if (imported.code !== 0) throw new Error(`docker import ${name}: ${imported.stderr}`);
  }
}

/** Removes every container left on the socket (a failed assertion must not leave any behind). */
async function removeAll(socket: string): Promise<void> {
  const ids = (await dockerCli(socket, 'ps', '-aq')).stdout.split('\n').filter(Boolean);
  if (ids.length > 0) await dockerCli(socket, 'rm', '-f', ...ids);
}

const DOCKER_PY_SCRIPT = `
import json, sys, docker
client = docker.DockerClient(base_url="unix://" + sys.argv[1])
out = {}
# The user guide's first example: a foreground run answers the container's output.
out["hello"] = client.containers.run("bb", "echo hello", remove=True).decode()
c = client.containers.run(
    "bb", ["sh", "-c", "echo from-detached; exec sleep 1000"], detach=True,
    environment={"MODE": "demo"}, working_dir="/tmp", user="1000",
    mem_limit="64m", nano_cpus=500000000, pids_limit=50,
)
c.reload()
out["image_tags"] = c.image.tags
out["image_id_matches"] = c.image.id == c.attrs["Image"] == c.attrs.get("ImageID", c.attrs["Image"])
out["config_image"] = c.attrs["Config"]["Image"]
out["env"] = c.attrs["Config"]["Env"]
out["workdir"] = c.attrs["Config"]["WorkingDir"]
out["user"] = c.attrs["Config"]["User"]
host = c.attrs["HostConfig"]
out["limits"] = [host["Memory"], host["NanoCpus"], host["PidsLimit"]]
out["log_driver"] = host["LogConfig"]["Type"]
code, output = c.exec_run(["sh", "-c", "id -u; id -g; pwd; echo $MODE"])
out["exec"] = [code, output.decode()]
out["status"] = c.status
out["ancestor"] = [x.name for x in client.containers.list(filters={"ancestor": "bb"})]
out["other_ancestor"] = [x.name for x in client.containers.list(all=True, filters={"ancestor": "other"})]
c.stop(timeout=1)
out["logs"] = c.logs().decode()
c.remove()
try:
    client.containers.run("bb", ["sh", "-c", "echo bad >&2; exit 3"], remove=True)
    out["failed"] = None
except docker.errors.ContainerError as error:
    out["failed"] = [error.exit_status, error.stderr.decode() if error.stderr else ""]
out["left"] = [x.name for x in client.containers.list(all=True)]
print(json.dumps(out))
`;

t.test('docker-py: containers.run in the foreground and detached, and what inspect reports', async (t) => {
  const sandbox = makeSandbox(t, 'dpy');
  const { dockerSocket } = await startWithDockerSocket(t, sandbox);
  t.teardown(() => removeAll(dockerSocket));
  await importImage(sandbox, dockerSocket, 'bb');
  const script = join(sandbox.dir, 'docker_py.py');
  writeFileSync(script, DOCKER_PY_SCRIPT);

  const ran = await runClient(PYTHON, [script, dockerSocket], dockerSocket);
  t.equal(ran.code, 0, ran.stderr);
  const out = JSON.parse(ran.stdout) as Record<string, unknown>;
  t.equal(out.hello, 'hello\n', 'a foreground run answers the output (HostConfig.LogConfig is there)');
  t.same(out.image_tags, ['bb:latest'], 'container.image is the image, found by the id inspect reports');
  t.equal(out.image_id_matches, true, 'Image and ImageID are the image id');
  t.equal(out.config_image, 'bb:latest', 'Config.Image is the name the container was made from');
  t.ok((out.env as string[]).includes('MODE=demo'), 'Config.Env holds what the process got');
  t.equal(out.workdir, '/tmp');
  t.equal(out.user, '1000:1001', "uid 1000 takes its primary group from the image's /etc/passwd");
  t.same(out.limits, [64 * 1024 * 1024, 500000000, 50], 'Memory, NanoCpus, PidsLimit as applied');
  t.equal(out.log_driver, 'json-file');
  t.same(out.exec, [0, '1000\n1001\n/tmp\ndemo\n'], 'the process runs with that user, directory and env');
  t.equal(out.status, 'running');
  t.equal((out.ancestor as string[]).length, 1, 'the ancestor filter finds the container by its image');
  t.same(out.other_ancestor, []);
  t.equal(out.logs, 'from-detached\n');
  t.same(out.failed, [3, 'bad\n'], 'a failing run raises ContainerError with its exit code and stderr');
  t.same(out.left, [], 'remove=True leaves nothing behind');
});

const COMPOSE_FILE = `version: "3"
services:
  web:
    image: bb
    network_mode: none
    command: sh -c 'echo web-started; exec sleep 1000'
  once:
    image: bb
    network_mode: none
    command: echo once-done
`;

t.test('docker-compose: up -d, ps, logs, top, attached up and down', async (t) => {
  const sandbox = makeSandbox(t, 'dcmp');
  const { dockerSocket } = await startWithDockerSocket(t, sandbox);
  t.teardown(() => removeAll(dockerSocket));
  await importImage(sandbox, dockerSocket, 'bb');
  const project = join(sandbox.dir, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'docker-compose.yml'), COMPOSE_FILE);
  const compose = (...args: string[]) =>
    runClient('docker-compose', ['-p', 'dcmp', '--ansi', 'never', ...args], dockerSocket, project);

  // Attached first: compose creates the container, attaches, starts it and prints until it exits.
  const attached = await compose('up', '--no-color', 'once');
  t.equal(attached.code, 0, attached.stderr);
  t.match(attached.stdout, /once_1\s+\| once-done/, 'an attached up follows the output until the exit');
  const again = await compose('up', '--no-color', 'once');
  t.equal(again.code, 0, again.stderr);
  t.match(again.stdout, /once_1\s+\| once-done/, 'an attached up of the exited service shows its new run');
  const up = await compose('up', '-d', 'web');
  t.equal(up.code, 0, up.stderr);
  const ps = await compose('ps');
  t.equal(ps.code, 0, ps.stderr);
  t.match(ps.stdout, /dcmp_web_1\s.*\sUp/);
  t.match(ps.stdout, /dcmp_once_1\s.*Exit 0/);
  const logs = await compose('logs', '--no-color');
  t.equal(logs.code, 0, logs.stderr);
  t.match(logs.stdout, /web_1\s+\| web-started/, 'compose logs prints the service output');
  t.match(logs.stdout, /once_1\s+\| once-done/);
  const top = await compose('top', 'web');
  t.equal(top.code, 0, top.stderr);
  t.match(top.stdout, /sleep 1000/);
  const down = await compose('down');
  t.equal(down.code, 0, down.stderr);
  t.equal((await dockerCli(dockerSocket, 'ps', '-aq')).stdout.trim(), '', 'down removes the containers');
});

t.test('image names with slashes reach the image routes; logs with tail=-1 are all of them', async (t) => {
  const sandbox = makeSandbox(t, 'dslash');
  const { dockerSocket } = await startWithDockerSocket(t, sandbox);
  t.teardown(() => removeAll(dockerSocket));
  const run = (...args: string[]) => dockerCli(dockerSocket, ...args);
  await importImage(sandbox, dockerSocket, 'myorg/app', 'registry:5000/team/app:v2');

  const inspected = await run('image', 'inspect', '-f', '{{index .RepoTags 0}}', 'myorg/app');
  t.equal(inspected.code, 0, inspected.stderr);
  t.equal(inspected.stdout.trim(), 'myorg/app:latest');
  const tagged = await run('image', 'inspect', '-f', '{{index .RepoTags 0}}', 'registry:5000/team/app:v2');
  t.equal(tagged.stdout.trim(), 'registry:5000/team/app:v2', tagged.stderr);
  const missing = await run('image', 'inspect', 'myorg/nope');
  t.equal(missing.code, 1);
  t.match(missing.stderr, /No such image: myorg\/nope/, 'a missing one is a 404, not a 501');

  const id = sandbox.id('printer');
  const started = await run(
    'run',
    '-d',
    '--name',
    id,
    'myorg/app',
    'sh',
    '-c',
    'for i in 1 2 3; do echo line-$i; done; exec sleep 1000',
  );
  t.equal(started.code, 0, started.stderr);
  const docker = new Docker({ socketPath: dockerSocket });
  const container = docker.getContainer(id);
  const inspect = await container.inspect();
  t.equal(inspect.Config.Image, 'myorg/app:latest');
  const image = await docker.getImage(inspect.Image).inspect();
  t.same(image.RepoTags, ['myorg/app:latest'], 'the image id of the container finds its image');
  // What testcontainers' Wait.forLogMessage asks for: the whole log, followed.
  await eventually(async () => ((await run('logs', id)).stdout.includes('line-3') ? true : undefined));
  const all = await container.logs({ stdout: true, stderr: true, tail: -1, follow: false });
  t.match(all.toString('latin1'), /line-1[^]*line-2[^]*line-3/, 'tail=-1 is all of the log');
  const lastOne = await run('logs', '--tail', '1', id);
  t.equal(lastOne.stdout, 'line-3\n');
  t.equal((await run('rm', '-f', id)).code, 0);

  const removed = await run('rmi', 'registry:5000/team/app:v2');
  t.equal(removed.code, 0, removed.stderr);
  t.match(removed.stdout, /Untagged: registry:5000\/team\/app:v2/);
  t.equal((await run('rmi', 'myorg/app')).code, 0);
  t.equal((await run('images', '-q')).stdout.trim(), '', 'no image is left');
  const save = await run('save', '-o', join(sandbox.dir, 'saved.tar'), 'myorg/app');
  t.match(save.stderr, /No such image: myorg\/app/, 'docker save of a removed image names it');
});
