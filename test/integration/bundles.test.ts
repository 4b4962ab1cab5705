import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Bundle, BundleDetail, RootfsUploadResult } from '../../src/schemas/bundle.js';
import type { Container, ExecResult } from '../../src/schemas/container.js';
import { importRoot, makeBusyboxRootfs, tarball, uploadRootfs } from '../helpers/rootfs.js';
import { client, eventually, makeSandbox, startInProcess } from '../helpers/sandbox.js';

/** Managed bundles against real runc: made from an import root and from an uploaded tarball, then run. */
t.test('managed bundles', async (t) => {
  const sandbox = makeSandbox(t, 'bdl');
  const imports = importRoot(sandbox);
  mkdirSync(imports);
  const busybox = makeBusyboxRootfs(imports);
  const daemon = await startInProcess(t, sandbox, { importRoots: [imports] });
  const api = client(daemon);
  const until = (id: string, predicate: (container: Container) => boolean, timeoutMs = 10_000) =>
    eventually(async () => {
      const container = (await api.get<Container>(`/containers/${id}`)).body;
      return predicate(container) ? container : undefined;
    }, timeoutMs);

  await t.test('a bundle from an import-root directory runs, takes execs and shows its config', async (t) => {
    const created = await api.post<Bundle>('/bundles', {
      id: 'imported',
      rootfs: { path: busybox },
      process: { args: ['sleep', '999999'], env: ['GREETING=hello'], cwd: '/tmp' },
      hostname: 'box',
      labels: { origin: 'import' },
    });
    t.equal(created.status, 201, JSON.stringify(created.body));
    t.equal(created.headers.location, '/bundles/imported');
    t.match(created.body, {
      id: 'imported',
      path: join(sandbox.bundleRoot, 'imported'),
      rootfs: { source: 'import', origin: busybox, ready: true },
      labels: { origin: 'import' },
      containers: [],
      privateTo: null,
    });
    t.ok(created.body.rootfs.sizeBytes > 500_000, 'busybox was copied');
    t.ok(created.body.rootfs.fileCount > 100, 'with its applet links');

    const configPath = join(sandbox.bundleRoot, 'imported', 'config.json');
    const digest = 'sha256:' + createHash('sha256').update(readFileSync(configPath)).digest('hex');
    t.equal(created.body.configDigest, digest, 'the digest is of the config.json on disk');

    const detail = await api.get<BundleDetail>('/bundles/imported');
    t.equal(detail.status, 200);
    const config = detail.body.config as {
      process: { args: string[]; env: string[]; terminal: boolean; cwd: string };
      hostname: string;
      root: { path: string; readonly: boolean };
      linux: { namespaces: unknown[] };
    };
    t.same(config.process.args, ['sleep', '999999']);
    t.equal(config.process.terminal, false, 'terminal is false without anyone editing JSON');
    t.ok(config.process.env.includes('GREETING=hello'));
    t.ok(
      config.process.env.some((entry) => entry.startsWith('PATH=')),
      "runc spec's PATH is kept",
    );
    t.equal(config.hostname, 'box');
    t.same(config.root, { path: 'rootfs', readonly: true }, "runc spec's read-only root");
    t.ok(config.linux.namespaces.length >= 5, "runc spec's namespaces are kept");

    const id = sandbox.id('from-import');
    const run = await api.post<Container>('/containers', { id, bundleId: 'imported', start: true });
    t.equal(run.status, 201, JSON.stringify(run.body));
    t.match(run.body, { status: 'running', bundle: join(sandbox.bundleRoot, 'imported') });
    const exec = await api.post<ExecResult>(`/containers/${id}/exec`, {
      args: ['sh', '-c', 'echo "$GREETING from $(hostname) in $(pwd)"'],
    });
    t.equal(exec.body.stdout, 'hello from box in /tmp\n');
    t.same((await api.get<Bundle>('/bundles/imported')).body.containers, [id]);

    const inUse = await api.delete('/bundles/imported');
    t.equal(inUse.status, 409);
    t.equal(inUse.body.code, 'bundle_in_use');
    t.match(inUse.body.detail, id);

    // The same bundle by path is the same managed bundle: linked, digest-checked.
    const second = sandbox.id('by-path');
    const byPath = await api.post<Container>('/containers', {
      id: second,
      bundle: join(sandbox.bundleRoot, 'imported'),
    });
    t.equal(byPath.status, 201);
    t.same((await api.get<Bundle>('/bundles/imported')).body.containers.sort(), [id, second].sort());

    await api.delete(`/containers/${id}?force=true`);
    await api.delete(`/containers/${second}?force=true`);
    await eventually(async () =>
      (await api.get<Bundle>('/bundles/imported')).body.containers.length === 0 ? true : undefined,
    );
    t.equal((await api.delete('/bundles/imported')).status, 204);
    t.notOk(existsSync(join(sandbox.bundleRoot, 'imported')), 'its directory is gone');
    t.equal((await api.get('/bundles/imported')).status, 404);
    t.ok(existsSync(join(busybox, 'bin', 'busybox')), 'the import source is untouched');
  });

  await t.test(
    'rootfs.path must stay inside an import root and hold only files, directories and links',
    async (t) => {
      const post = (id: string, path: string) =>
        api.post('/bundles', { id, rootfs: { path }, process: { args: ['sleep', '1'] } });
      const outsideRoot = await post('outside', sandbox.bundleRoot);
      t.equal(outsideRoot.status, 400);
      t.equal(outsideRoot.body.code, 'rootfs_outside_import_roots');
      symlinkSync('/etc', join(imports, 'etc-link'));
      const throughLink = await post('through-link', join(imports, 'etc-link'));
      t.equal(throughLink.status, 400, 'a symlink out of the import root is judged by where it leads');
      t.equal(throughLink.body.code, 'rootfs_outside_import_roots');

      const withFifo = join(imports, 'with-fifo');
      mkdirSync(join(withFifo, 'run'), { recursive: true });
      execFileSync('mkfifo', [join(withFifo, 'run', 'pipe')]);
      const fifo = await post('fifo', withFifo);
      t.equal(fifo.status, 400);
      t.equal(fifo.body.code, 'rootfs_entry_unsupported');
      t.match(fifo.body.detail, 'entry "run/pipe" is a fifo');

      const climbing = join(imports, 'climbing');
      mkdirSync(climbing);
      symlinkSync('../../../../etc/shadow', join(climbing, 'shadow'));
      const escape = await post('climbing', climbing);
      t.equal(escape.status, 400);
      t.equal(escape.body.code, 'rootfs_link_outside');
      for (const id of ['outside', 'through-link', 'fifo', 'climbing']) {
        t.notOk(existsSync(join(sandbox.bundleRoot, id)), `${id}: nothing left in the bundle root`);
      }
    },
  );

  await t.test('an uploaded busybox tarball becomes a rootfs that runs', async (t) => {
    const created = await api.post<Bundle>('/bundles', {
      id: 'uploaded',
      rootfs: { upload: true },
      process: { args: ['sleep', '999999'] },
    });
    t.equal(created.status, 201);
    t.match(created.body.rootfs, { source: 'upload', ready: false, sizeBytes: 0 });
    const early = await api.post('/containers', { id: sandbox.id('early'), bundleId: 'uploaded' });
    t.equal(early.status, 409);
    t.equal(early.body.code, 'bundle_rootfs_missing');

    const uploaded = await uploadRootfs(
      daemon,
      'uploaded',
      tarball(busybox, { gzip: true }),
      'application/gzip',
    );
    t.equal(uploaded.status, 200, JSON.stringify(uploaded.body));
    const result = uploaded.body as RootfsUploadResult;
    t.ok(
      result.sizeBytes > 500_000 && result.fileCount > 100,
      `${result.sizeBytes} bytes, ${result.fileCount} files`,
    );
    t.match((await api.get<Bundle>('/bundles/uploaded')).body.rootfs, {
      ready: true,
      ...result,
      id: undefined,
    });
    t.equal(
      readdirSync(join(sandbox.bundleRoot, 'uploaded')).sort().join(','),
      'config.json,rootfs',
      'nothing but config.json and the rootfs',
    );

    const id = sandbox.id('from-upload');
    const run = await api.post<Container>('/containers', { id, bundleId: 'uploaded', start: true });
    t.equal(run.status, 201, JSON.stringify(run.body));
    const ps = await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['ps'] });
    t.match(ps.body.stdout, /^\s+1 \S+\s+sleep 999999$/m, 'sleep is PID 1');
    const busy = await uploadRootfs(daemon, 'uploaded', tarball(busybox));
    t.equal(busy.status, 409, 'a rootfs in use is not replaced');
    t.equal(busy.body.code, 'bundle_in_use');
    await api.delete(`/containers/${id}?force=true`);
  });

  await t.test('a changed config.json is refused at create', async (t) => {
    await api.post('/bundles', {
      id: 'tampered',
      rootfs: { path: busybox },
      process: { args: ['sleep', '1'] },
    });
    const path = join(sandbox.bundleRoot, 'tampered', 'config.json');
    const spec = JSON.parse(readFileSync(path, 'utf8')) as { process: { args: string[] } };
    spec.process.args = ['sh', '-c', 'echo changed'];
    writeFileSync(path, JSON.stringify(spec));
    const refused = await api.post('/containers', { id: sandbox.id('tampered'), bundleId: 'tampered' });
    t.equal(refused.status, 409);
    t.equal(refused.body.code, 'bundle_config_modified');
    t.same((await api.get<Bundle>('/bundles/tampered')).body.containers, [], 'no link is left behind');
    t.equal((await api.delete('/bundles/tampered')).status, 204);
  });

  await t.test('a missing args[0] is a 400 naming the PATH searched', async (t) => {
    const refused = await api.post('/bundles', {
      id: 'nosuch',
      rootfs: { path: busybox },
      process: { args: ['nosuchcommand'] },
    });
    t.equal(refused.status, 400);
    t.equal(refused.body.code, 'executable_not_found');
    t.match(refused.body.detail, 'exec: "nosuchcommand": executable file not found in $PATH');
    t.match(refused.body.detail, 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    t.notOk(existsSync(join(sandbox.bundleRoot, 'nosuch')), 'no half-made bundle');

    // With an uploaded rootfs the lookup happens when a container is created.
    await api.post('/bundles', { id: 'late', rootfs: { upload: true }, process: { args: ['/opt/app'] } });
    await uploadRootfs(daemon, 'late', tarball(busybox));
    const late = await api.post('/containers', { id: sandbox.id('late'), bundleId: 'late' });
    t.equal(late.status, 400);
    t.equal(late.body.code, 'executable_not_found');
    t.match(late.body.detail, '/opt/app');
    t.equal((await api.get(`/containers/${sandbox.id('late')}`)).status, 404, 'no container was made');
    t.same((await api.get<Bundle>('/bundles/late')).body.containers, []);
  });

  await t.test('spec + rootfsFrom makes a private bundle that goes away with its container', async (t) => {
    const id = sandbox.id('private');
    const made = await api.post<Container>('/containers', {
      id,
      spec: { process: { args: ['sh', '-c', 'echo private; sleep 999999'] } },
      rootfsFrom: 'uploaded',
      start: true,
    });
    t.equal(made.status, 201, JSON.stringify(made.body));
    const privateBundle = (await api.get<Bundle[]>('/bundles')).body.find(
      (bundle) => bundle.privateTo === id,
    );
    t.ok(privateBundle, 'listed, marked private to its container');
    t.match(privateBundle, { rootfs: { source: 'shared', origin: 'uploaded' }, containers: [id] });
    t.same((await api.get<Bundle>('/bundles/uploaded')).body.containers, [id], 'the rootfs owner is in use');
    const hostname = await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['hostname'] });
    t.equal(hostname.body.stdout, `${id}\n`, "a private bundle's hostname is its container's");
    t.equal(
      (await api.post('/containers', { id: sandbox.id('x'), bundleId: privateBundle!.id })).status,
      409,
    );

    t.equal((await api.delete(`/containers/${id}?force=true`)).status, 204);
    await eventually(async () =>
      (await api.get(`/bundles/${privateBundle!.id}`)).status === 404 ? true : undefined,
    );
    t.notOk(existsSync(privateBundle!.path), 'its directory is removed');
    t.same((await api.get<Bundle>('/bundles/uploaded')).body.containers, []);
  });

  await t.test('init: true makes tini PID 1, so stop ends a busybox sleep with SIGTERM', async (t) => {
    const id = sandbox.id('init');
    const made = await api.post<Container>('/containers', {
      id,
      spec: { process: { args: ['sleep', '999999'] }, init: true },
      rootfsFrom: 'uploaded',
      start: true,
    });
    t.equal(made.status, 201, JSON.stringify(made.body));
    const ps = await api.post<ExecResult>(`/containers/${id}/exec`, { args: ['ps'] });
    t.match(ps.body.stdout, /^\s+1 \S+\s+\/dev\/init -- sleep 999999$/m, 'tini is PID 1');
    const stopped = await api.post<Container>(`/containers/${id}/stop?timeout=60`);
    t.equal(stopped.status, 200);
    t.equal(
      stopped.body.exitCode,
      143,
      'sleep died of SIGTERM (128+15), not of the SIGKILL after the timeout',
    );
    const now = Math.ceil(Date.now() / 1000);
    const events = await daemon.app.inject({
      url: `/events?id=${id}&type=stop&since=${now - 600}&until=${now}`,
    });
    t.match(events.body, /"escalated":false/, 'the stop did not escalate');
    await api.delete(`/containers/${id}`);
  });

  await t.test('resource limits reach the cgroup, PATCH changes them, and an OOM is reported', async (t) => {
    const id = sandbox.id('limited');
    const made = await api.post<Container>('/containers', {
      id,
      spec: {
        process: { args: ['sleep', '999999'] },
        resources: { memoryBytes: 64 * 1024 * 1024, pidsLimit: 20, cpus: 0.5 },
      },
      rootfsFrom: 'uploaded',
      start: true,
    });
    t.equal(made.status, 201, JSON.stringify(made.body));
    const stats = await api.get<{ memory: { limitBytes: number }; pids: { limit: number } }>(
      `/containers/${id}/stats`,
    );
    t.equal(stats.body.memory.limitBytes, 64 * 1024 * 1024, 'memory limit visible in stats');
    t.equal(stats.body.pids.limit, 20, 'pids limit visible in stats');

    const patched = await daemon.app.inject({
      method: 'PATCH',
      url: `/containers/${id}/resources`,
      payload: { pidsLimit: 50 },
    });
    t.equal(patched.statusCode, 200, patched.body);
    t.same(patched.json(), { id, memoryBytes: 64 * 1024 * 1024, cpus: 0.5, pidsLimit: 50 });
    const after = await api.get<{ pids: { limit: number } }>(`/containers/${id}/stats`);
    t.equal(after.body.pids.limit, 50, 'runc update changed the pids limit');

    await api.post(`/containers/${id}/kill?signal=SIGKILL`);
    const stopped = await daemon.app.inject({
      method: 'PATCH',
      url: `/containers/${id}/resources`,
      payload: { pidsLimit: 60 },
    });
    t.equal(stopped.statusCode, 409);
    t.equal(stopped.json().code, 'container_not_running');
    await api.delete(`/containers/${id}`);

    const hog = sandbox.id('hog');
    await api.post('/containers', {
      id: hog,
      spec: {
        process: { args: ['sh', '-c', 'x=aaaaaaaa; while true; do x=$x$x; done'] },
        resources: { memoryBytes: 32 * 1024 * 1024 },
      },
      rootfsFrom: 'uploaded',
      start: true,
    });
    const dead = await until(hog, (container) => container.status === 'stopped', 30_000);
    t.match(dead, { exitCode: 137, oomKilled: true });
    await api.delete(`/containers/${hog}`);
  });

  await t.test(
    "rlimits above the host's hard limit are clamped, so the container still starts",
    async (t) => {
      const hardNofile = Number(
        /^Max open files\s+\S+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1],
      );
      t.ok(hardNofile > 0, `host hard nofile is ${hardNofile}`);
      const id = sandbox.id('rlimit');
      const made = await api.post<Container>('/containers', {
        id,
        spec: {
          process: {
            args: ['sleep', '999999'],
            rlimits: [{ type: 'RLIMIT_NOFILE', soft: hardNofile * 10, hard: hardNofile * 10 }],
          },
        },
        rootfsFrom: 'uploaded',
        start: true,
      });
      t.equal(made.status, 201, JSON.stringify(made.body));
      const limits = await api.post<ExecResult>(`/containers/${id}/exec`, {
        args: ['sh', '-c', 'ulimit -Hn'],
      });
      t.equal(limits.body.stdout.trim(), String(hardNofile));
      await api.delete(`/containers/${id}?force=true`);
    },
  );
});
