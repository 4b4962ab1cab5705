import pino from 'pino';
import { ContainerService } from '../../src/lifecycle/container-service.js';
import { EventBus } from '../../src/lifecycle/event-bus.js';
import type { RestartClock } from '../../src/lifecycle/restart-scheduler.js';
import type { ContainerEvent } from '../../src/schemas/events.js';
import { ContainerRepository } from '../../src/store/container-repository.js';
import { openDatabase, type Db } from '../../src/store/database.js';
import { EventRepository } from '../../src/store/event-repository.js';
import { TombstoneRepository } from '../../src/store/tombstone-repository.js';
import { acceptingBundles, FakeRuntime } from './fake-runtime.js';

/** A clock the test moves: timers run (in due order) only when `advance` passes their time. */
export class FakeClock implements RestartClock {
  private time = Date.now();
  private readonly timers = new Map<number, { at: number; run: () => void }>();
  private nextHandle = 1;

  now(): number {
    return this.time;
  }

  setTimeout(run: () => void, ms: number): unknown {
    const handle = this.nextHandle++;
    this.timers.set(handle, { at: this.time + ms, run });
    return handle;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** The delays of the timers waiting, from now. */
  pendingDelays(): number[] {
    return [...this.timers.values()].map((timer) => timer.at - this.time);
  }

  advance(ms: number): void {
    const until = this.time + ms;
    for (;;) {
      const due = [...this.timers.entries()]
        .filter(([, timer]) => timer.at <= until)
        .sort(([, a], [, b]) => a.at - b.at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].run();
    }
    this.time = until;
  }
}

/** A ContainerService over the fake runtime, a real SQLite store in memory and a fake restart clock. */
export interface FakeLifecycle {
  service: ContainerService;
  runtime: FakeRuntime;
  clock: FakeClock;
  db: Db;
  /** A fresh repository over the same database: what the store holds, not what the service's view says. */
  stored: (id: string) => ReturnType<ContainerRepository['all']>[number] | undefined;
  /** Resolves with the next event of `type` for `id` (registered before the call that causes it). */
  nextEvent: (type: ContainerEvent['type'], id: string) => Promise<ContainerEvent>;
  events: ContainerEvent[];
  /** runcd killed and started again: a new service over the same store and runtime, init() done. */
  restartDaemon: () => Promise<ContainerService>;
  close: () => void;
}

export async function startFakeLifecycle(
  shared: { runtime?: FakeRuntime; db?: Db } = {},
): Promise<FakeLifecycle> {
  const runtime = shared.runtime ?? new FakeRuntime();
  const db = shared.db ?? openDatabase(':memory:');
  const clock = new FakeClock();
  const events: ContainerEvent[] = [];
  const services: ContainerService[] = [];
  const build = async (): Promise<ContainerService> => {
    const bus = new EventBus(new EventRepository(db));
    bus.subscribe((event) => events.push(event));
    const service = new ContainerService({
      repository: new ContainerRepository(db),
      tombstones: new TombstoneRepository(db),
      events: bus,
      runc: runtime.runc,
      conmon: runtime.conmon,
      bundles: acceptingBundles(),
      logger: pino({ level: 'silent' }),
      restartClock: clock,
    });
    services.push(service);
    await service.init();
    return service;
  };
  const lifecycle: FakeLifecycle = {
    service: await build(),
    runtime,
    clock,
    db,
    events,
    stored: (id) => new ContainerRepository(db).all().find((record) => record.id === id),
    nextEvent: (type, id) =>
      new Promise((resolve) => {
        const unsubscribe = lifecycle.service.events.subscribe((event) => {
          if (event.type === type && event.id === id) {
            unsubscribe();
            resolve(event);
          }
        });
      }),
    restartDaemon: async () => {
      lifecycle.service.close();
      lifecycle.service = await build();
      return lifecycle.service;
    },
    close: () => {
      for (const service of services) service.close();
      db.close();
      runtime.cleanup();
    },
  };
  return lifecycle;
}
