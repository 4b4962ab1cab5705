import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Container } from '../../src/schemas/container.js';
import { client, eventually, makeSandbox, startInProcess } from '../helpers/sandbox.js';

/** Every common error of the seed lesson, answered with a status code and a message that names the problem. */
t.test('common lifecycle errors', async (t) => {
  const sandbox = makeSandbox(t, 'err');
  const daemon = await startInProcess(t, sandbox);
  const api = client(daemon);
  const bundle = sandbox.bundle('b');
  const id = sandbox.id('c1');

  t.test('duplicate id is a 409 with runc-style wording', async (t) => {
    t.equal((await api.post('/containers', { id, bundle })).status, 201);
    const duplicate = await api.post('/containers', { id, bundle });
    t.equal(duplicate.status, 409);
    t.equal(duplicate.body.code, 'container_exists');
    t.equal(duplicate.body.detail, `container "${id}" already exists`);
  });

  t.test('exec into a created container works, as with runc', async (t) => {
    const result = await api.post(`/containers/${id}/exec`, { args: ['true'] });
    t.equal(result.status, 200);
    t.equal(result.body.exitCode, 0);
  });

  t.test('start twice is a 409', async (t) => {
    t.equal((await api.post(`/containers/${id}/start`)).status, 200);
    const again = await api.post(`/containers/${id}/start`);
    t.equal(again.status, 409);
    t.equal(again.body.code, 'container_already_running');
    t.equal(again.body.detail, 'cannot start an already running container');
  });

  t.test('delete of a running container is a 409; force deletes it', async (t) => {
    const refused = await api.delete(`/containers/${id}`);
    t.equal(refused.status, 409);
    t.equal(refused.body.detail, 'cannot delete container that is not stopped: running');
    t.equal((await api.get<Container>(`/containers/${id}`)).body.status, 'running', 'still running');
    t.equal((await api.delete(`/containers/${id}?force=true`)).status, 204);
    t.equal((await api.get(`/containers/${id}`)).status, 404);
  });

  t.test('delete of a created (never started) container needs no force, as runc delete', async (t) => {
    const created = sandbox.id('created');
    t.equal((await api.post('/containers', { id: created, bundle })).status, 201);
    const deleted = await api.delete(`/containers/${created}`);
    t.equal(deleted.status, 204, JSON.stringify(deleted.body));
    t.equal((await api.get(`/containers/${created}`)).status, 404);
    const wait = await api.post(`/containers/${created}/wait`);
    t.equal(wait.status, 200, 'its end stays readable through wait');
  });

  t.test('exec failures: missing executable is a 400, non-zero exit is a 200', async (t) => {
    const c2 = sandbox.id('c2');
    await api.post('/containers', { id: c2, bundle, start: true });
    const missing = await api.post(`/containers/${c2}/exec`, { args: ['no-such-binary'] });
    t.equal(missing.status, 400);
    t.equal(missing.body.code, 'executable_not_found');
    t.match(missing.body.detail, /no-such-binary/);
    const failing = await api.post(`/containers/${c2}/exec`, {
      args: ['sh', '-c', 'echo out; echo err >&2; exit 3'],
      env: ['GREETING=hi'],
    });
    t.equal(failing.status, 200);
    t.match(failing.body, {
      exitCode: 3,
      stdout: 'out\n',
      stderr: 'err\n',
      truncated: false,
      timedOut: false,
    });
    const env = await api.post(`/containers/${c2}/exec`, {
      args: ['sh', '-c', 'echo $GREETING $(id -u) $(pwd)'],
      env: ['GREETING=hi'],
      user: '1000:1000',
      cwd: '/tmp',
    });
    t.equal(env.body.stdout, 'hi 1000 /tmp\n', 'env, user and cwd reach the process');
    const big = await api.post(`/containers/${c2}/exec`, { args: ['sh', '-c', 'yes | head -c 3000000'] });
    t.equal(big.body.truncated, true, 'output over the cap is cut and flagged');
    t.equal((big.body.stdout as string).length, 1024 * 1024);
    const slow = await api.post(`/containers/${c2}/exec`, { args: ['sleep', '30'], timeoutSeconds: 0.5 });
    t.equal(slow.status, 200);
    t.match(slow.body, { timedOut: true, exitCode: 137 });
    await api.delete(`/containers/${c2}?force=true`);
  });

  t.test('kill a stopped container is a 409; exec into it is a 409', async (t) => {
    const c3 = sandbox.id('c3');
    await api.post('/containers', { id: c3, bundle, start: true });
    t.equal((await api.post(`/containers/${c3}/kill?signal=KILL`)).status, 204);
    const kill = await api.post(`/containers/${c3}/kill`);
    t.equal(kill.status, 409);
    t.equal(kill.body.code, 'container_not_running');
    const exec = await api.post(`/containers/${c3}/exec`, { args: ['ps'] });
    t.equal(exec.status, 409);
    t.equal(exec.body.detail, 'cannot exec into a stopped container');
    const start = await api.post(`/containers/${c3}/start`);
    t.equal(start.status, 409);
    t.equal(start.body.detail, 'cannot start a container that has stopped');
    t.equal((await api.delete(`/containers/${c3}`)).status, 204);
  });

  t.test('unknown or invalid signals are a 400 before anything runs', async (t) => {
    const before = daemon.runner.spawnCount;
    for (const signal of ['KILLX', '0', '-9', '65', '999', 'SIG42', '']) {
      const response = await api.post(`/containers/${id}/kill?signal=${encodeURIComponent(signal)}`);
      t.equal(response.status, 400, `signal ${JSON.stringify(signal)}`);
      t.equal(response.body.code, 'invalid_signal');
    }
    t.equal(daemon.runner.spawnCount, before, 'no process was spawned');
  });

  t.test('invalid ids are a 400 before anything runs', async (t) => {
    const before = daemon.runner.spawnCount;
    for (const bad of ['..', 'a/b', '-rf', 'x'.repeat(65), '', 'café', '.hidden', 'a b']) {
      const created = await api.post('/containers', { id: bad, bundle });
      t.equal(created.status, 400, `create ${JSON.stringify(bad)}`);
      t.equal(created.body.code, 'invalid_container_id');
      if (bad === '' || bad === '..') continue; // these are different URLs, not ids
      const state = await api.get(`/containers/${encodeURIComponent(bad)}`);
      t.equal(state.status, 400, `state ${JSON.stringify(bad)}`);
      t.match(state.body.detail, /container id must be/);
    }
    t.equal((await api.get('/containers/a%2Fb')).status, 400);
    t.equal((await api.get('/containers/x%00y')).status, 400);
    t.equal(daemon.runner.spawnCount, before, 'no process was spawned');
  });

  t.test('bundle problems are a 400 that names the bundle', async (t) => {
    const before = daemon.runner.spawnCount;
    const outside = await api.post('/containers', { id: sandbox.id('x'), bundle: '/etc' });
    t.equal(outside.status, 400);
    t.equal(outside.body.code, 'bundle_outside_roots');
    const escape = await api.post('/containers', {
      id: sandbox.id('x'),
      bundle: `${sandbox.bundleRoot}/../state`,
    });
    t.equal(escape.body.code, 'bundle_outside_roots');
    const relative = await api.post('/containers', { id: sandbox.id('x'), bundle: 'b' });
    t.equal(relative.body.code, 'bundle_path_relative');

    const empty = join(sandbox.bundleRoot, 'empty');
    mkdirSync(join(empty, 'rootfs'), { recursive: true });
    const noConfig = await api.post('/containers', { id: sandbox.id('x'), bundle: empty });
    t.equal(noConfig.status, 400);
    t.equal(noConfig.body.detail, `bundle "${empty}" has no config.json`);

    const broken = join(sandbox.bundleRoot, 'broken');
    mkdirSync(join(broken, 'rootfs'), { recursive: true });
    writeFileSync(join(broken, 'config.json'), '{"ociVersion": ');
    t.equal(
      (await api.post('/containers', { id: sandbox.id('x'), bundle: broken })).body.code,
      'bundle_invalid_config',
    );

    const link = join(sandbox.bundleRoot, 'link');
    symlinkSync(bundle, link);
    t.equal(
      (await api.post('/containers', { id: sandbox.id('x'), bundle: link })).body.code,
      'bundle_through_symlink',
    );

    t.equal(daemon.runner.spawnCount, before, 'no process was spawned');
    t.equal((await api.get(`/containers/${sandbox.id('x')}`)).status, 404, 'nothing half-created');
  });

  t.test('runc rejecting a bundle leaves nothing behind', async (t) => {
    const missingBinary = sandbox.bundle('nobin', ['no-such-init']);
    const rejected = await api.post('/containers', { id: sandbox.id('nobin'), bundle: missingBinary });
    t.equal(rejected.status, 400);
    t.equal(rejected.body.code, 'executable_not_found');
    t.match(rejected.body.detail, /no-such-init.*executable file not found/);
    // A mount the policy allows (tmpfs) but the kernel refuses: an unknown filesystem type would now be
    // refused by the bundle policy before runc ever ran.
    const badMount = sandbox.bundle('badmount', ['sleep', '1'], (spec) => {
      (spec.mounts as unknown[]).push({
        destination: '/data',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['size=bogus'],
      });
    });
    const mount = await api.post('/containers', { id: sandbox.id('badmount'), bundle: badMount });
    t.equal(mount.status, 422);
    t.equal(mount.body.code, 'runtime_create_failed');
    t.match(mount.body.detail, /runtime could not create the container: .*size=bogus: invalid argument/);
    t.equal((await api.get(`/containers/${sandbox.id('badmount')}`)).status, 404);
    t.equal((await api.get(`/containers/${sandbox.id('nobin')}`)).status, 404);
    const again = await api.post('/containers', { id: sandbox.id('nobin'), bundle });
    t.equal(again.status, 201, 'the id is free again');
    await api.delete(`/containers/${sandbox.id('nobin')}?force=true`);
  });

  t.test('a process that exits at once ends stopped with its exit code', async (t) => {
    const quick = sandbox.bundle('quick', ['sh', '-c', 'exit 7']);
    const c4 = sandbox.id('quick');
    const created = await api.post<Container>('/containers', { id: c4, bundle: quick, start: true });
    t.equal(created.status, 201);
    const stopped = await eventually(async () => {
      const state = (await api.get<Container>(`/containers/${c4}`)).body;
      return state.status === 'stopped' ? state : undefined;
    });
    t.match(stopped, { status: 'stopped', exitCode: 7, pid: 0 });
    t.equal((await api.delete(`/containers/${c4}`)).status, 204);
  });

  t.test('bad bodies and routes answer problem+json', async (t) => {
    const json = await daemon.app.inject({
      method: 'POST',
      url: '/containers',
      headers: { 'content-type': 'application/json' },
      payload: '{bad',
    });
    t.equal(json.statusCode, 400);
    t.equal(json.json().code, 'invalid_json');
    const text = await daemon.app.inject({
      method: 'POST',
      url: '/containers',
      headers: { 'content-type': 'text/plain' },
      payload: 'x',
    });
    t.equal(text.statusCode, 415);
    const extra = await api.post('/containers', { id: sandbox.id('y'), bundle, privileged: true });
    t.equal(extra.status, 400);
    t.match(extra.body.detail, /privileged/);
    const route = await api.get('/nope');
    t.equal(route.status, 404);
    t.equal(route.body.code, 'route_not_found');
    const filter = await api.get('/containers?label=novalue');
    t.equal(filter.status, 400);
    t.equal((await api.get('/containers?status=sleeping')).status, 400);
  });
});
