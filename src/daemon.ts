import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './app.js';
import type { Config } from './config.js';
import { BundleInspector } from './lifecycle/bundle-inspector.js';
import { ContainerService } from './lifecycle/container-service.js';
import { Conmon } from './runtime/conmon.js';
import { ProcessRunner } from './runtime/process-runner.js';
import { Runc } from './runtime/runc.js';
import { ContainerRepository } from './store/container-repository.js';
import { EventRepository } from './store/event-repository.js';
import { TombstoneRepository } from './store/tombstone-repository.js';
import { EventBus } from './lifecycle/event-bus.js';
import { openDatabase, type Db } from './store/database.js';

export interface DaemonConfig extends Pick<Config, 'stateDir' | 'runtimeRoot' | 'bundleRoots'> {
  /** Absolute paths: resolve them with resolveBinary first. */
  runtimeBinary: string;
  conmonBinary: string;
}

export interface Daemon {
  app: FastifyInstance;
  containers: ContainerService;
  runner: ProcessRunner;
  close(): Promise<void>;
}

/** Wires store, runtime adapter and lifecycle service into an app; reconciles with the runtime before returning. */
export async function openDaemon(config: DaemonConfig, logger: Logger): Promise<Daemon> {
  const scratchDir = join(config.stateDir, 'tmp');
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  await mkdir(scratchDir, { recursive: true, mode: 0o700 });
  await mkdir(config.runtimeRoot, { recursive: true, mode: 0o700 });
  for (const root of config.bundleRoots) await mkdir(root, { recursive: true, mode: 0o755 });

  const db: Db = openDatabase(join(config.stateDir, 'runcd.db'));
  const runner = new ProcessRunner();
  const runc = new Runc({ binary: config.runtimeBinary, root: config.runtimeRoot, scratchDir, runner });
  const conmon = new Conmon({
    binary: config.conmonBinary,
    runtimeBinary: config.runtimeBinary,
    stateDir: config.stateDir,
    runc,
    runner,
  });
  const containers = new ContainerService({
    repository: new ContainerRepository(db),
    tombstones: new TombstoneRepository(db),
    events: new EventBus(new EventRepository(db)),
    runc,
    conmon,
    bundles: new BundleInspector(config.bundleRoots),
    logger: logger.child({ component: 'lifecycle' }),
  });
  try {
    await containers.init();
  } catch (error) {
    db.close();
    throw error;
  }
  const app = await buildApp({ containers, logger });
  return {
    app,
    containers,
    runner,
    async close() {
      await app.close();
      containers.close();
      db.close();
    },
  };
}
