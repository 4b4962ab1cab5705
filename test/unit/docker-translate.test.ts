import t from 'tap';
import { dockerIdOf } from '../../src/docker/docker-ids.js';
import { DockerError } from '../../src/docker/docker-errors.js';
import {
  dockerState,
  inspectOf,
  summaryOf,
  type ImageRef,
  type RunView,
} from '../../src/docker/translate/container-shapes.js';
import { dockerEventOf } from '../../src/docker/translate/events.js';
import {
  matchesContainerFilters,
  matchesEventFilters,
  parseFilters,
  signalParam,
  timeParam,
  timeoutParam,
} from '../../src/docker/translate/params.js';
import type { Container } from '../../src/schemas/container.js';
import type { ContainerEvent } from '../../src/schemas/events.js';

// The Docker surface's pure translations, without a daemon: runcd's shapes in, Docker's out.
const container = (overrides: Partial<Container> = {}): Container => ({
  id: 'web-1',
  status: 'running',
  pid: 4242,
  bundle: '/var/lib/runcd/bundles/web',
  rootfs: '/var/lib/runcd/bundles/web/rootfs',
  created: '2026-12-02T10:00:00.000Z',
  ociVersion: '1.0.2-dev',
  owner: 'root',
  labels: { tier: 'web' },
  exitCode: null,
  oomKilled: false,
  startedAt: '2026-12-02T10:00:01.000Z',
  finishedAt: null,
  restartPolicy: { name: 'no' },
  restartCount: 0,
  stopSignal: 'SIGTERM',
  stopTimeout: 10,
  autoRemove: false,
  monitor: 'ok',
  ...overrides,
});

const run = (overrides: Partial<RunView> = {}): RunView => ({
  command: ['sleep', '1000'],
  env: ['PATH=/bin', 'MODE=demo'],
  cwd: '/srv',
  user: '1000',
  memoryBytes: 67108864,
  cpus: 0.5,
  pidsLimit: 50,
  readonlyRootfs: false,
  tty: false,
  ...overrides,
});
const bb: ImageRef = { name: 'bb:latest', id: `sha256:${'a'.repeat(64)}` };

t.test('states: runcd stopped is Docker exited, creating reads created', async (t) => {
  t.equal(dockerState(container({ status: 'stopped' })), 'exited');
  t.equal(dockerState(container({ status: 'creating' })), 'created');
  t.equal(dockerState(container({ status: 'paused' })), 'paused');
});

t.test('inspect: State, Name, Id and HostConfig as docker inspect reads them', async (t) => {
  const inspected = inspectOf(container({ autoRemove: true }), run(), bb, 'web-1') as {
    Id: string;
    Name: string;
    Image: string;
    State: { Status: string; Running: boolean; Paused: boolean; Pid: number };
    HostConfig: Record<string, unknown>;
    Config: Record<string, unknown>;
    Path: string;
    Args: string[];
  };
  t.equal(inspected.Id, dockerIdOf('web-1'));
  t.equal(inspected.Name, '/web-1');
  t.match(inspected.State, { Status: 'running', Running: true, Paused: false, Pid: 4242 });
  t.equal(inspected.HostConfig.AutoRemove, true, 'auto-removal is the container’s own property');
  t.equal(inspected.Path, 'sleep');
  t.same(inspected.Args, ['1000']);
  t.equal(inspected.Image, bb.id, 'Image is the image id (docker-py reads container.image from it)');
  t.match(inspected.Config, { Image: 'bb:latest', Env: ['PATH=/bin', 'MODE=demo'], WorkingDir: '/srv' });
  t.equal(inspected.Config.User, '1000');
  t.match(inspected.HostConfig, {
    LogConfig: { Type: 'json-file' },
    Memory: 67108864,
    NanoCpus: 500000000,
    PidsLimit: 50,
    ReadonlyRootfs: false,
  });
  const exited = inspectOf(
    container({ status: 'stopped', exitCode: 3, pid: 0 }),
    run({ command: [], memoryBytes: null, cpus: null, pidsLimit: null, readonlyRootfs: true }),
    bb,
    'web-1',
  ) as {
    State: { Status: string; Running: boolean; ExitCode: number };
    HostConfig: Record<string, unknown>;
  };
  t.match(exited.State, { Status: 'exited', Running: false, ExitCode: 3 });
  t.match(
    exited.HostConfig,
    { Memory: 0, NanoCpus: 0, PidsLimit: null, ReadonlyRootfs: true },
    'no limits read as Docker’s zeroes; --read-only as root.readonly says',
  );
});

t.test('summary: docker ps columns', async (t) => {
  const summary = summaryOf(container(), run(), bb, 'web-1') as {
    Names: string[];
    ImageID: string;
    State: string;
    Status: string;
    Image: string;
    Labels: Record<string, string>;
  };
  t.same(summary.Names, ['/web-1']);
  const renamed = summaryOf(container(), run(), bb, 'front') as { Names: string[]; Id: string };
  t.same(renamed.Names, ['/front'], 'a renamed container shows its Docker name');
  t.equal(renamed.Id, dockerIdOf('web-1'), 'under the id of its runc id');
  t.equal(summary.State, 'running');
  t.match(summary.Status, /^Up /);
  t.equal(summary.Image, 'bb:latest');
  t.equal(summary.ImageID, bb.id);
  t.same(summary.Labels, { tier: 'web' });
});

t.test('filters: parsed from Docker JSON, matched on containers and events', async (t) => {
  const filters = parseFilters(JSON.stringify({ label: ['tier=web'], status: ['running'] }));
  t.ok(matchesContainerFilters(container(), filters));
  t.notOk(matchesContainerFilters(container({ labels: { tier: 'db' } }), filters));
  t.notOk(matchesContainerFilters(container({ status: 'stopped' }), filters), 'exited is not running');
  t.throws(() => parseFilters('{not json'), DockerError);
  const facts = {
    imageOf: () => 'bb:latest',
    createdOf: (reference: string) => (reference === 'older' ? '2026-12-02T09:00:00.000Z' : undefined),
    nameOf: () => 'front',
  };
  const match = (value: object, overrides: Partial<Container> = {}) =>
    matchesContainerFilters(container(overrides), parseFilters(JSON.stringify(value)), facts);
  t.ok(match({ ancestor: ['bb'] }), 'ancestor: bb is bb:latest');
  t.notOk(match({ ancestor: ['other'] }));
  t.ok(match({ exited: ['3'] }, { status: 'stopped', exitCode: 3 }));
  t.notOk(match({ exited: ['3'] }, { status: 'stopped', exitCode: 0 }));
  t.notOk(match({ exited: ['0'] }), 'a running container has not exited');
  t.ok(match({ since: ['older'] }), 'created after the referenced container');
  t.notOk(match({ before: ['older'] }));
  t.ok(match({ name: ['fro'] }), 'name: matched on the Docker name');
  t.notOk(match({ name: ['web-1'] }), 'not on the runc id of a renamed container');
  t.throws(() => match({ since: ['nobody'] }), new DockerError(404, 'No such container: nobody'));
  t.throws(() => match({ exited: ['x'] }), DockerError, 'a non-numeric exit code is a 400');
  const event: ContainerEvent = {
    seq: 7,
    type: 'start',
    id: 'web-1',
    time: '2026-12-02T10:00:01.000Z',
    attributes: {},
  } as ContainerEvent;
  const docker = dockerEventOf(event, { tier: 'web' });
  t.equal(docker.Action, 'start');
  t.equal(docker.Actor.ID, dockerIdOf('web-1'));
  t.ok(matchesEventFilters(docker, 'web-1', parseFilters(JSON.stringify({ container: ['web-1'] }))));
  t.notOk(matchesEventFilters(docker, 'web-1', parseFilters(JSON.stringify({ container: ['other'] }))));
});

t.test('params: times, timeouts and signals as the docker CLI sends them', async (t) => {
  t.equal(timeParam('0', 'since'), new Date(0).toISOString(), 'since=0 is the epoch: replay everything');
  t.equal(timeParam('0', 'until'), undefined, 'until=0 is no end');
  t.equal(timeParam('1764669600', 'until'), new Date(1764669600 * 1000).toISOString());
  t.equal(timeParam('2026-12-02T10:00:00Z', 'since'), '2026-12-02T10:00:00.000Z');
  t.throws(() => timeParam('yesterday', 'since'), DockerError);
  t.equal(timeoutParam('5'), 5);
  t.equal(signalParam('SIGTERM').number, 15);
  t.equal(signalParam('9').number, 9);
  t.throws(() => signalParam('SIGKILL '), DockerError, 'a signal with whitespace is refused, as runc does');
});
