import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Bundle } from '../../src/schemas/bundle.js';
import type { Container } from '../../src/schemas/container.js';
import { importRoot, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { DaemonProcess, eventually, makeSandbox } from '../helpers/sandbox.js';

t.test('bundle metadata and the containers using it survive a SIGKILL of the daemon', async (t) => {
  const sandbox = makeSandbox(t, 'bdlrs');
  const imports = importRoot(sandbox);
  mkdirSync(imports);
  const busybox = makeBusyboxRootfs(imports);
  const daemon = new DaemonProcess(sandbox, ['--import-root', imports, '--max-rootfs-bytes', '64M']);
  t.teardown(() => daemon.close());
  await daemon.start();

  const created = await daemon.request<Bundle>('POST', '/bundles', {
    id: 'kept',
    rootfs: { path: busybox },
    process: { args: ['sleep', '999999'] },
    labels: { tier: 'test' },
  });
  t.equal(created.status, 201, JSON.stringify(created.body));
  const shared = sandbox.id('shared');
  const own = sandbox.id('own');
  t.equal(
    (await daemon.request('POST', '/containers', { id: shared, bundleId: 'kept', start: true })).status,
    201,
  );
  t.equal(
    (
      await daemon.request('POST', '/containers', {
        id: own,
        spec: { process: { args: ['sleep', '999999'] } },
        rootfsFrom: 'kept',
        start: true,
      })
    ).status,
    201,
  );

  await daemon.stop('SIGKILL');
  await daemon.start();

  const after = await daemon.request<Bundle>('GET', '/bundles/kept');
  t.equal(after.status, 200);
  t.match(after.body, {
    id: 'kept',
    labels: { tier: 'test' },
    configDigest: created.body.configDigest,
    rootfs: { source: 'import', origin: busybox, ready: true, sizeBytes: created.body.rootfs.sizeBytes },
  });
  t.same(after.body.containers.sort(), [own, shared].sort(), 'both containers still use it');
  const privateBundle = (await daemon.request<Bundle[]>('GET', '/bundles')).body.find(
    (bundle) => bundle.privateTo === own,
  );
  t.ok(privateBundle, 'the private bundle is still there');
  t.equal((await daemon.request('DELETE', '/bundles/kept')).status, 409, 'still in use after the restart');

  t.equal((await daemon.request('DELETE', `/containers/${own}?force=true`)).status, 204);
  await eventually(async () =>
    (await daemon.request('GET', `/bundles/${privateBundle!.id}`)).status === 404 ? true : undefined,
  );
  t.notOk(existsSync(privateBundle!.path));
  const running = await daemon.request<Container>('GET', `/containers/${shared}`);
  t.equal(running.body.status, 'running');
  t.equal((await daemon.request('DELETE', `/containers/${shared}?force=true`)).status, 204);
  t.equal((await daemon.request('DELETE', '/bundles/kept')).status, 204);
  t.notOk(existsSync(join(sandbox.bundleRoot, 'kept')));
});
