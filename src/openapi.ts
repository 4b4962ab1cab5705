import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { buildApp } from './app.js';
import { BundleService } from './bundles/bundle-service.js';
import { WritableLayers } from './bundles/writable-layer.js';
import { OverlayMounts } from './runtime/overlay-mount.js';
import { ContainerCreation } from './creation/container-creation.js';
import { ContainerAttach } from './lifecycle/container-attach.js';
import { ExecSessions } from './lifecycle/exec-sessions.js';
import { ContainerResourceService } from './lifecycle/container-resources.js';
import { DEFAULT_INIT_BINARY, DEFAULT_MAX_ROOTFS_BYTES, DEFAULT_NETWORK } from './config.js';
import { NetworkService } from './network/network-service.js';
import { NetworkRepository } from './store/network-repository.js';
import { BundleInspector } from './bundle-checks/bundle-inspector.js';
import { BundlePolicy } from './bundle-checks/bundle-policy.js';
import { ContainerService } from './lifecycle/container-service.js';
import { Conmon } from './runtime/conmon.js';
import { ProcessRunner } from './runtime/process-runner.js';
import { Runc } from './runtime/runc.js';
import { RateLimiter } from './security/rate-limiter.js';
import { TokenAuthenticator } from './security/tokens.js';
import { BundleRepository } from './store/bundle-repository.js';
import { ContainerRepository } from './store/container-repository.js';
import { EventRepository } from './store/event-repository.js';
import { TombstoneRepository } from './store/tombstone-repository.js';
import { EventBus } from './lifecycle/event-bus.js';
import { openDatabase } from './store/database.js';
import { TokenRepository } from './store/token-repository.js';
import { ReadinessRepository } from './store/readiness-repository.js';
import { DaemonMetrics } from './observability/metrics.js';
import { SystemStatus } from './observability/system-status.js';

/**
 * The OpenAPI document exactly as the server publishes it at /openapi.json. The service behind the app is never
 * called (no request is made), so it points at nothing on disk and spawns nothing.
 */
export async function generateOpenApiDocument(): Promise<unknown> {
  const inspection = await buildInspectionApp();
  const document = inspection.app.swagger();
  await inspection.close();
  return document;
}

/**
 * The native app wired to services that point at nothing, for reading what it declares (its OpenAPI document,
 * the access of each route) without a daemon. `requireToken` makes every non-public route ask for a token.
 */
export async function buildInspectionApp(options: { requireToken?: boolean } = {}): Promise<{
  app: FastifyInstance;
  tokens: TokenRepository;
  close: () => Promise<void>;
}> {
  const runner = new ProcessRunner();
  const runc = new Runc({ binary: 'runc', root: '/nonexistent', scratchDir: '/nonexistent', runner });
  const db = openDatabase(':memory:');
  const tokens = new TokenRepository(db);
  const conmon = new Conmon({
    binary: 'conmon',
    runtimeBinary: 'runc',
    stateDir: '/nonexistent',
    runc,
    runner,
  });
  const containers = new ContainerService({
    repository: new ContainerRepository(db),
    tombstones: new TombstoneRepository(db),
    events: new EventBus(new EventRepository(db)),
    runc,
    conmon,
    bundles: new BundleInspector([]),
    logger: pino({ level: 'silent' }),
  });
  const metrics = new DaemonMetrics({ runner, events: containers.events, containers });
  const status = new SystemStatus({
    readinessStore: new ReadinessRepository(db),
    databasePath: ':memory:',
    runc,
    conmon,
    containers,
    metrics,
    runtimeSecurity: { runtime: 'runc', version: null, package: null, advisories: [], warnings: [] },
  });
  const policy = new BundlePolicy();
  const bundles = new BundleService({
    repository: new BundleRepository(db),
    runc,
    policy,
    bundleRoot: '/nonexistent',
    importRoots: [],
    maxRootfsBytes: DEFAULT_MAX_ROOTFS_BYTES,
    initBinary: DEFAULT_INIT_BINARY,
    layers: new WritableLayers(new OverlayMounts(runner)),
    logger: pino({ level: 'silent' }),
  });
  const sessions = new ExecSessions(containers, conmon, pino({ level: 'silent' }));
  const app = await buildApp({
    containers,
    bundles,
    creation: new ContainerCreation(containers, bundles),
    sessions,
    attach: new ContainerAttach(containers, conmon, sessions, pino({ level: 'silent' })),
    resources: new ContainerResourceService(containers, bundles, runc, conmon),
    networks: new NetworkService({
      repository: new NetworkRepository(db),
      settings: {
        configDir: '/nonexistent',
        ipamDir: '/nonexistent',
        defaultNetwork: DEFAULT_NETWORK,
        publishHostIp: '127.0.0.1',
      },
      deleteLink: async () => undefined,
      logger: pino({ level: 'silent' }),
    }),
    system: { status, metrics },
    security: {
      listener: 'unix',
      requireToken: options.requireToken ?? false,
      authenticator: new TokenAuthenticator(tokens),
      rateLimiter: new RateLimiter(0, 0),
    },
  });
  await app.ready();
  return {
    app,
    tokens,
    close: async () => {
      await app.close();
      metrics.close();
      db.close();
    },
  };
}

export function serializeOpenApi(document: unknown): string {
  return JSON.stringify(document, null, 2) + '\n';
}
