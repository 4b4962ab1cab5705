import { setImmediate as nextTick } from 'node:timers/promises';
import t from 'tap';
import type { BundleReservation, BundleService } from '../../src/bundles/bundle-service.js';
import { ContainerCreation } from '../../src/creation/container-creation.js';
import { ConflictError } from '../../src/errors.js';
import { startFakeLifecycle } from '../helpers/fake-lifecycle.js';

/**
 * The creation use case between the bundle service and the container service, over the fake runtime: a create
 * that fails hands its bundle back, an existing id is refused before any bundle is touched, a deleted
 * container's bundles are released, and at startup bundles held for vanished containers are forgotten.
 */

type BundleSide = Pick<BundleService, 'reserve' | 'releaseFor' | 'forgetContainersExcept'>;

/** Records what the creation asked of the bundle side; `reserve` answers the given bundle path. */
function recordingBundles(bundlePath = '/bundles/made') {
  const calls: string[] = [];
  const bundles: BundleSide = {
    async reserve(containerId: string): Promise<BundleReservation> {
      calls.push(`reserve ${containerId}`);
      return {
        bundlePath,
        expectedConfigDigest: undefined,
        release: async () => {
          calls.push(`release ${containerId}`);
        },
      };
    },
    async releaseFor(containerId: string): Promise<void> {
      calls.push(`releaseFor ${containerId}`);
    },
    async forgetContainersExcept(existing: ReadonlySet<string>): Promise<void> {
      calls.push(`forget except ${[...existing].sort().join(',')}`);
    },
  };
  return { bundles, calls };
}

t.test('a create answers the container and keeps its bundle held', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { bundles, calls } = recordingBundles();
  const creation = new ContainerCreation(lifecycle.service, bundles);
  await creation.init();
  t.teardown(() => creation.close());

  const made = await creation.create({ id: 'c1', bundleId: 'b1' });
  t.match(made, { id: 'c1', status: 'created', bundle: '/bundles/made' }, 'created from the reserved bundle');
  t.same(calls, ['forget except ', 'reserve c1'], 'reserved once, never released');
});

t.test('a create runc refuses hands the bundle back and leaves no container', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { bundles, calls } = recordingBundles();
  const creation = new ContainerCreation(lifecycle.service, bundles);
  lifecycle.runtime.failNext('create', 'rootfs (/bundles/made/rootfs) does not exist');

  await t.rejects(creation.create({ id: 'c2', bundleId: 'b1' }), 'the create fails');
  t.same(calls, ['reserve c2', 'release c2'], 'the reservation was released');
  t.notOk(lifecycle.service.has('c2'), 'no container record');
  t.equal(lifecycle.stored('c2'), undefined, 'nothing in the store');
});

t.test('an id in use is refused before any bundle is reserved', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { bundles, calls } = recordingBundles();
  const creation = new ContainerCreation(lifecycle.service, bundles);
  await creation.create({ id: 'taken', bundle: '/bundles/a' });
  calls.length = 0;

  const error = await creation.create({ id: 'taken', bundleId: 'b1' }).catch((caught: unknown) => caught);
  t.ok(error instanceof ConflictError, 'a conflict');
  t.match(error, { code: 'container_exists' }, 'named container_exists');
  t.same(calls, [], 'the bundle side was not asked');
});

t.test('deleting a container releases its bundles; init forgets vanished ones', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const { bundles, calls } = recordingBundles();
  const creation = new ContainerCreation(lifecycle.service, bundles);
  await creation.create({ id: 'keep', bundle: '/bundles/a' });
  await creation.create({ id: 'gone', bundle: '/bundles/b' });
  await creation.init();
  t.same(calls.at(-1), 'forget except gone,keep', 'init names the containers that exist');

  await lifecycle.service.delete('gone', { force: true });
  await nextTick();
  await creation.close();
  t.equal(calls.at(-1), 'releaseFor gone', 'the delete released its bundles');

  await lifecycle.service.delete('keep', { force: true });
  await nextTick();
  t.equal(calls.at(-1), 'releaseFor gone', 'after close, deletes are no longer followed');
});
