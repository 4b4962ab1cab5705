import { setImmediate as nextTick } from 'node:timers/promises';
import t from 'tap';
import { ConflictError } from '../../src/errors.js';
import { ContainerResourceService } from '../../src/lifecycle/container-resources.js';
import type { ContainerService } from '../../src/lifecycle/container-service.js';
import {
  OPERATION_RULES,
  OPERATIONS,
  type ContainerOperation,
} from '../../src/lifecycle/container-states.js';
import type { ContainerStatus } from '../../src/schemas/container.js';
import { parseSignal, type Signal } from '../../src/signals.js';
import { startFakeLifecycle, type FakeLifecycle } from '../helpers/fake-lifecycle.js';

/**
 * ContainerService, through the fake runtime, must answer every operation in every status exactly as
 * container-states.ts's OPERATION_RULES says: the table is iterated, so a rule changed in the table and not in
 * the service (or the reverse) fails here, in milliseconds.
 */

function signal(name: string): Signal {
  const parsed = parseSignal(name);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.signal;
}

/** Each operation as a caller reaches it through the service's public API. */
interface Target {
  service: ContainerService;
  /** `update` is runc update, asked through ContainerResourceService (it guards with the same table). */
  resources: ContainerResourceService;
}

const CALLS: Record<ContainerOperation, (target: Target, id: string) => Promise<unknown>> = {
  start: ({ service }, id) => service.start(id),
  exec: ({ service }, id) => service.exec(id, { args: ['true'] }),
  attach: async ({ service }, id) => service.checkAttach(id),
  kill: ({ service }, id) => service.kill(id, signal('SIGKILL')),
  stop: ({ service }, id) => service.stop(id, { timeoutSeconds: 5 }),
  restart: ({ service }, id) => service.restart(id, { timeoutSeconds: 5 }),
  pause: ({ service }, id) => service.pause(id),
  resume: ({ service }, id) => service.resume(id),
  delete: ({ service }, id) => service.delete(id, { force: false }),
  'delete --force': ({ service }, id) => service.delete(id, { force: true }),
  processes: ({ service }, id) => service.processes(id),
  stats: ({ service }, id) => service.stats(id),
  logs: async ({ service }, id) => service.logSource(id).cancel(),
  wait: async ({ service }, id) => service.waitFor(id, 'stopped').cancel(),
  update: ({ resources }, id) => resources.update(id, { memoryBytes: 64 * 1024 * 1024 }),
};

/**
 * `creating` is visible only to operations that do not take the id's lock (create holds it while creating): the
 * others queue behind the create and meet the created container. The table says the same (container-states.ts).
 */
const LOCK_FREE: ReadonlySet<ContainerOperation> = new Set([
  'exec',
  'attach',
  'restart',
  'update',
  'processes',
  'stats',
  'logs',
  'wait',
]);

let serial = 0;

/** A fresh container in `status`, made the way a caller (and runc) would make it. */
async function containerIn(lifecycle: FakeLifecycle, status: ContainerStatus): Promise<string> {
  const id = `c${++serial}`;
  const { service, runtime } = lifecycle;
  const bundle = `/bundles/${id}`;
  if (status === 'creating') {
    runtime.interruptCreate();
    void service.create({ id, bundle }).catch(() => undefined);
    while (!service.list().some((container) => container.id === id)) await nextTick();
    return id;
  }
  await service.create({ id, bundle, start: status !== 'created' });
  if (status === 'paused') await service.pause(id);
  if (status === 'stopped') {
    const stopped = service.waitFor(id, 'stopped');
    runtime.exit(id, 3);
    await stopped.result;
  }
  return id;
}

function targetOf(lifecycle: FakeLifecycle): Target {
  const { service, runtime } = lifecycle;
  const resources = new ContainerResourceService(
    service,
    { checkResources: () => undefined },
    runtime.runcUpdate,
    runtime.conmon,
  );
  return { service, resources };
}

t.test('every operation in every status answers as OPERATION_RULES says', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const target = targetOf(lifecycle);
  for (const operation of OPERATIONS) {
    for (const [status, rule] of Object.entries(OPERATION_RULES[operation]) as Array<
      [ContainerStatus, (typeof OPERATION_RULES)[ContainerOperation][ContainerStatus]]
    >) {
      if (status === 'creating' && !LOCK_FREE.has(operation)) continue;
      const id = await containerIn(lifecycle, status);
      t.equal(lifecycle.service.get(id).status, status, `${id} is ${status}`);
      let outcome: unknown = 'allowed';
      try {
        await CALLS[operation](target, id);
      } catch (error) {
        outcome = error;
      }
      if (rule === 'allowed') {
        t.equal(outcome, 'allowed', `${operation} of a ${status} container is allowed`);
      } else {
        t.type(outcome, ConflictError, `${operation} of a ${status} container is refused`);
        t.match(
          outcome,
          { code: rule.code, message: rule.message(id) },
          `${operation} of a ${status} container answers ${rule.code}`,
        );
      }
    }
  }
});

t.test('a refused operation never reaches runc', async (t) => {
  const lifecycle = await startFakeLifecycle();
  t.teardown(lifecycle.close);
  const target = targetOf(lifecycle);
  const id = await containerIn(lifecycle, 'stopped');
  const before = lifecycle.runtime.calls.length;
  for (const operation of ['exec', 'kill', 'pause', 'resume', 'processes', 'stats', 'update'] as const) {
    await t.rejects(CALLS[operation](target, id), ConflictError, `${operation} refused`);
  }
  t.same(lifecycle.runtime.calls.slice(before), [], 'no runc command was run for a refused operation');
});

t.test(
  'an operation that takes the lock waits for a create in progress instead of acting on it',
  async (t) => {
    const lifecycle = await startFakeLifecycle();
    t.teardown(lifecycle.close);
    const target = targetOf(lifecycle);
    const id = await containerIn(lifecycle, 'creating');
    const before = lifecycle.runtime.calls.length;
    const settled: string[] = [];
    for (const operation of OPERATIONS.filter((operation) => !LOCK_FREE.has(operation))) {
      CALLS[operation](target, id).then(
        () => settled.push(operation),
        () => settled.push(operation),
      );
    }
    for (let i = 0; i < 10; i++) await nextTick();
    t.same(settled, [], 'all of them are still queued behind the create');
    t.same(lifecycle.runtime.calls.slice(before), [], 'none of them reached runc');
    t.equal(lifecycle.service.get(id).status, 'creating');
  },
);
