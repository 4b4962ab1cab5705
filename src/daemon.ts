import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './app.js';
import type { Config, NetworkFlags } from './config.js';
import { DEFAULT_AARDVARK_BINARY, DEFAULT_CNI_PLUGIN_DIR, DEFAULT_NETWORK } from './config.js';
import { existsSync } from 'node:fs';
import { ContainerDns, DNS_SEARCH_DOMAIN } from './network/container-dns.js';
import { Aardvark } from './runtime/aardvark.js';
import { ContainerNetworking } from './network/container-networking.js';
import { NetworkService } from './network/network-service.js';
import { Cni } from './runtime/cni.js';
import { NetworkRepository } from './store/network-repository.js';
import { BundleService } from './bundles/bundle-service.js';
import { WritableLayers } from './bundles/writable-layer.js';
import { DockerNameRepository } from './store/docker-name-repository.js';
import { VolumeService } from './bundles/volume-service.js';
import { VolumeRepository } from './store/volume-repository.js';
import { OverlayMounts } from './runtime/overlay-mount.js';
import { ContainerCreation } from './creation/container-creation.js';
import { ContainerAttach } from './lifecycle/container-attach.js';
import { ExecSessions } from './lifecycle/exec-sessions.js';
import { ContainerResourceService } from './lifecycle/container-resources.js';
import { DEFAULT_INIT_BINARY, DEFAULT_MAX_ROOTFS_BYTES } from './config.js';
import { BundleInspector } from './bundle-checks/bundle-inspector.js';
import { BundlePolicy, type BundlePolicyRules } from './bundle-checks/bundle-policy.js';
import { ContainerService } from './lifecycle/container-service.js';
import { buildDockerApp } from './docker/docker-app.js';
import { ImageLoader } from './bundles/image-loader.js';
import { ImagePuller } from './bundles/image-puller.js';
import { ImagePusher } from './bundles/image-pusher.js';
import { ImageSaver } from './bundles/image-saver.js';
import { ImageTools } from './runtime/image-tools.js';
import { Conmon } from './runtime/conmon.js';
import { ProcessRunner, type ProcessLimits } from './runtime/process-runner.js';
import { Runc } from './runtime/runc.js';
import { collectRuntimeFacts } from './runtime/runtime-info.js';
import { AuditLog } from './security/audit-log.js';
import { DEFAULT_RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST_FACTOR } from './security/limits.js';
import { RateLimiter } from './security/rate-limiter.js';
import { assessRuntime, type RuntimeSecurityReport } from './security/runtime-advisories.js';
import type { SecurityOptions } from './security/security-plugin.js';
import { TokenAuthenticator } from './security/tokens.js';
import { BundleRepository } from './store/bundle-repository.js';
import { ContainerRepository } from './store/container-repository.js';
import { EventRepository } from './store/event-repository.js';
import { TombstoneRepository } from './store/tombstone-repository.js';
import { EventBus } from './lifecycle/event-bus.js';
import { openDatabase, type Db } from './store/database.js';
import { ReadinessRepository } from './store/readiness-repository.js';
import { DaemonMetrics } from './observability/metrics.js';
import { SystemStatus } from './observability/system-status.js';
import { TokenRepository } from './store/token-repository.js';

export interface DaemonConfig extends Pick<Config, 'stateDir' | 'runtimeRoot' | 'bundleRoots'> {
  /** `--import-root`: directories `rootfs.path` may copy from (none: only uploads). */
  importRoots?: string[];
  /** `--max-rootfs-bytes`. */
  maxRootfsBytes?: number;
  /** `--insecure-registry HOST:PORT`: registries pulled from over plain HTTP. */
  insecureRegistries?: string[];
  /** `--max-layer-bytes` (default: the rootfs quota). */
  maxLayerBytes?: number | undefined;
  /** tini's static build, for `init: true`. */
  initBinary?: string;
  /** Absolute paths: resolve them with resolveBinary first. */
  runtimeBinary: string;
  conmonBinary: string;
  /** The unix socket path (protected from bind mounts); the listener itself is main.ts's. */
  socket?: string | undefined;
  /** The Docker API socket, protected from bind mounts like the main one. */
  dockerSocket?: string | undefined;
  /** Require a token on the unix socket too (TCP always requires one). */
  requireToken?: boolean;
  /** Builds a second app for a TCP listener; with `tls`, it serves HTTPS (mutual TLS with `clientCa`). */
  tcp?: { host: string; port: number } | undefined;
  /** Builds a third app speaking the Docker Engine API, for `--docker-socket` (main.ts listens). */
  docker?: boolean | undefined;
  tls?: { cert: Buffer; key: Buffer; clientCa?: Buffer | undefined } | undefined;
  policy?: Partial<BundlePolicyRules>;
  /** `--allow-mount-source` directories, added to the policy's. */
  allowMountSources?: string[];
  /** Requests per second per token; 0 disables the limit. */
  rateLimitPerSecond?: number;
  processLimits?: Partial<ProcessLimits>;
  runtimeTimeoutMs?: number;
  /** CNI networking: plugin directories, the default network, the default host address of published ports. */
  network?: Partial<NetworkFlags>;
}

export interface Daemon {
  /** The app for the unix socket (and for inject() in tests). */
  app: FastifyInstance;
  /** The app for the TCP listener, when configured: same services, its own transport rules. */
  tcpApp: FastifyInstance | undefined;
  /** The Docker Engine API app, when configured: same services and token rules as the unix socket. */
  dockerApp: FastifyInstance | undefined;
  containers: ContainerService;
  bundles: BundleService;
  networks: NetworkService;
  runner: ProcessRunner;
  tokens: TokenRepository;
  policy: BundlePolicy;
  auditLogPath: string;
  runtimeSecurity: RuntimeSecurityReport;
  metrics: DaemonMetrics;
  status: SystemStatus;
  /**
   * Graceful shutdown: stop accepting, end streams, let in-flight requests finish for up to `graceMs` (then cut
   * their connections), close the store. Containers and their monitors are never touched.
   */
  close(options?: { graceMs?: number }): Promise<CloseReport>;
}

export interface CloseReport {
  /** Connections still open when the grace period ran out, cut without an answer. */
  cutConnections: number;
}

/** In-flight requests get this long to finish on shutdown; under systemd's TimeoutStopSec (15 s). */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
const IDLE_SWEEP_MS = 50;

/** Wires store, runtime adapter and lifecycle service into an app; reconciles with the runtime before returning. */
export async function openDaemon(config: DaemonConfig, logger: Logger): Promise<Daemon> {
  const scratchDir = join(config.stateDir, 'tmp');
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  await mkdir(scratchDir, { recursive: true, mode: 0o700 });
  await mkdir(config.runtimeRoot, { recursive: true, mode: 0o700 });
  for (const root of config.bundleRoots) await mkdir(root, { recursive: true, mode: 0o755 });

  const databasePath = join(config.stateDir, 'runcd.db');
  const db: Db = openDatabase(databasePath);
  const runner = new ProcessRunner(config.processLimits, { logger: logger.child({ component: 'runtime' }) });
  const runc = new Runc({
    binary: config.runtimeBinary,
    root: config.runtimeRoot,
    scratchDir,
    runner,
    ...(config.runtimeTimeoutMs ? { commandTimeoutMs: config.runtimeTimeoutMs } : {}),
  });
  runc.sweepScratch();
  const conmon = new Conmon({
    binary: config.conmonBinary,
    runtimeBinary: config.runtimeBinary,
    stateDir: config.stateDir,
    runc,
    runner,
  });
  const initBinary = config.initBinary ?? DEFAULT_INIT_BINARY;
  // Named volumes live in the state directory, which the bundle policy otherwise never lets a container mount.
  const volumesDir = join(resolve(config.stateDir), 'volumes');
  const policy = new BundlePolicy(
    {
      ...config.policy,
      allowMountSources: [...(config.policy?.allowMountSources ?? []), ...(config.allowMountSources ?? [])],
    },
    {
      stateDir: config.stateDir,
      others: [
        config.runtimeRoot,
        ...(config.socket ? [config.socket] : []),
        ...(config.dockerSocket ? [config.dockerSocket] : []),
      ],
    },
    { initBinary, volumesDir },
  );
  const bundleRepository = new BundleRepository(db);
  const cni = new Cni({ runner, pluginDirs: config.network?.pluginDirs ?? [DEFAULT_CNI_PLUGIN_DIR] });
  const networkRepository = new NetworkRepository(db);
  const networkLogger = logger.child({ component: 'network' });
  const aardvarkBinary = config.network?.aardvarkBinary ?? DEFAULT_AARDVARK_BINARY;
  if (aardvarkBinary !== 'none' && !existsSync(aardvarkBinary)) {
    networkLogger.warn(
      { aardvarkBinary },
      'aardvark-dns is not installed (apt-get install aardvark-dns): containers on user networks do not resolve each other by name',
    );
  }
  const dns = new ContainerDns({
    repository: networkRepository,
    aardvark:
      aardvarkBinary !== 'none' && existsSync(aardvarkBinary)
        ? new Aardvark({
            runner,
            binary: aardvarkBinary,
            configDir: join(config.stateDir, 'aardvark-dns'),
            searchDomain: DNS_SEARCH_DOMAIN,
          })
        : undefined,
    scratchDir: join(config.stateDir, 'aardvark-dns.new'),
    logger: networkLogger,
  });
  const networks = new NetworkService({
    repository: networkRepository,
    settings: {
      configDir: join(config.stateDir, 'cni', 'net.d'),
      ipamDir: join(config.stateDir, 'cni', 'ipam'),
      defaultNetwork: config.network?.defaultNetwork ?? DEFAULT_NETWORK,
      publishHostIp: config.network?.publishHostIp ?? '127.0.0.1',
      operatorConfigDir: config.network?.operatorConfigDir,
    },
    deleteLink: (name) => cni.deleteLink(name),
    deleted: (name) => dns.update([name]),
    logger: networkLogger,
  });
  const networking = new ContainerNetworking({
    networks,
    repository: networkRepository,
    cni,
    dns,
    netnsDir: join(config.stateDir, 'netns'),
    filesDir: join(config.stateDir, 'name-files'),
    logger: logger.child({ component: 'network' }),
  });
  const containers: ContainerService = new ContainerService({
    repository: new ContainerRepository(db),
    tombstones: new TombstoneRepository(db),
    events: new EventBus(new EventRepository(db)),
    runc,
    conmon,
    // Called only on creates, long after managedBundles below exists: the inspector asks the bundle service
    // which rootfs a private bundle shares.
    bundles: new BundleInspector(config.bundleRoots, policy, (dir): string | undefined =>
      managedBundles.sharedRootfsOf(dir),
    ),
    network: networking,
    logger: logger.child({ component: 'lifecycle' }),
  });
  const managedBundles = new BundleService({
    repository: bundleRepository,
    runc,
    policy,
    bundleRoot: config.bundleRoots[0]!,
    importRoots: config.importRoots ?? [],
    maxRootfsBytes: config.maxRootfsBytes ?? DEFAULT_MAX_ROOTFS_BYTES,
    initBinary,
    layers: new WritableLayers(new OverlayMounts(runner)),
    logger: logger.child({ component: 'bundles' }),
  });
  const creation = new ContainerCreation(containers, managedBundles);
  const volumes = new VolumeService({
    repository: new VolumeRepository(db),
    dir: volumesDir,
    logger: logger.child({ component: 'volumes' }),
  });
  const sessions = new ExecSessions(containers, conmon, logger.child({ component: 'sessions' }));
  const attach = new ContainerAttach(containers, conmon, sessions, logger.child({ component: 'attach' }));
  const resources = new ContainerResourceService(containers, managedBundles, runc, conmon);
  let audit: AuditLog | undefined;
  const apps: FastifyInstance[] = [];
  // Before init: reconciling at startup already runs the runtime and may publish events.
  const metrics = new DaemonMetrics({ runner, events: containers.events, containers });
  try {
    await containers.init();
    networks.logHostChanges();
    await managedBundles.init();
    await volumes.init();
    await creation.init();
    const runtimeSecurity = assessRuntime(await collectRuntimeFacts(runc, runner));
    const status = new SystemStatus({
      readinessStore: new ReadinessRepository(db),
      databasePath,
      runc,
      conmon,
      containers,
      metrics,
      runtimeSecurity,
    });
    const system = { status, metrics };
    audit = new AuditLog(join(config.stateDir, 'audit.log'), logger.child({ component: 'audit' }));
    const tokens = new TokenRepository(db);
    const rate = config.rateLimitPerSecond ?? DEFAULT_RATE_LIMIT_PER_SECOND;
    // One limiter shared by both listeners: a token's budget is the same whichever way it comes in.
    const rateLimiter = new RateLimiter(rate, rate * RATE_LIMIT_BURST_FACTOR);
    const security = (listener: SecurityOptions['listener']): SecurityOptions => ({
      listener,
      requireToken: config.requireToken ?? false,
      authenticator: new TokenAuthenticator(tokens),
      rateLimiter,
      audit,
    });
    // Registries: one puller (its single-flight spans both APIs) and one pusher, for the native and Docker APIs.
    const imageTools = new ImageTools({ runner });
    const imageLogger = logger.child({ component: 'images' });
    const registryOptions = {
      bundles: managedBundles,
      tools: imageTools,
      logger: imageLogger,
      insecureRegistries: config.insecureRegistries ?? [],
      certsDir: join(config.stateDir, 'certs.d'),
      authStore: join(config.stateDir, 'registry-auth.json'),
    };
    const images = {
      bundles: managedBundles,
      puller: new ImagePuller({
        ...registryOptions,
        maxLayerBytes: config.maxLayerBytes ?? config.maxRootfsBytes ?? DEFAULT_MAX_ROOTFS_BYTES,
      }),
      pusher: new ImagePusher(registryOptions),
    };
    const app = await buildApp({
      images,
      containers,
      bundles: managedBundles,
      creation,
      resources,
      sessions,
      attach,
      networks,
      logger,
      system,
      security: security('unix'),
    });
    apps.push(app);
    let tcpApp: FastifyInstance | undefined;
    if (config.tcp) {
      tcpApp = await buildApp({
        images,
        containers,
        bundles: managedBundles,
        creation,
        resources,
        sessions,
        attach,
        networks,
        logger,
        system,
        security: security('tcp'),
        ...(config.tls
          ? {
              https: {
                cert: config.tls.cert,
                key: config.tls.key,
                ca: config.tls.clientCa,
                // With a client CA, a client without a certificate it signed never completes the handshake.
                requestCert: config.tls.clientCa !== undefined,
                rejectUnauthorized: config.tls.clientCa !== undefined,
              },
            }
          : {}),
      });
      apps.push(tcpApp);
    }
    let dockerApp: FastifyInstance | undefined;
    if (config.docker) {
      dockerApp = await buildDockerApp({
        containers,
        bundles: managedBundles,
        creation,
        networks,
        sessions,
        imageLoader: new ImageLoader({
          bundles: managedBundles,
          tools: imageTools,
          logger: imageLogger,
        }),
        imagePuller: images.puller,
        imagePusher: images.pusher,
        imageSaver: new ImageSaver({ bundles: managedBundles, tools: imageTools }),
        dockerNames: new DockerNameRepository(db),
        volumes,
        security: security('unix'),
        logger: logger.child({ component: 'docker-api' }),
        metrics,
        resources,
        attach,
      });
      apps.push(dockerApp);
    }
    const openedAudit = audit;
    return {
      app,
      tcpApp,
      dockerApp,
      containers,
      bundles: managedBundles,
      networks,
      runner,
      tokens,
      policy,
      auditLogPath: openedAudit.path,
      runtimeSecurity,
      metrics,
      status,
      async close(options = {}) {
        const cutConnections = await closeApps(apps, options.graceMs ?? DEFAULT_SHUTDOWN_GRACE_MS, logger);
        await creation.close();
        containers.close();
        await conmon.settle();
        await runc.settle();
        metrics.close();
        runner.close();
        openedAudit.close();
        db.close();
        return { cutConnections };
      },
    };
  } catch (error) {
    for (const each of apps) await each.close();
    await creation.close();
    containers.close();
    metrics.close();
    runner.close();
    audit?.close();
    db.close();
    throw error;
  }
}

/**
 * Closes every listener at once: fastify stops accepting, aborts long-lived responses (the `closing` signal),
 * answers requests that arrive on open connections with 503, and waits for in-flight ones. Whatever is still
 * open after `graceMs` is cut, so a wedged request can never keep the daemon from exiting.
 */
async function closeApps(apps: FastifyInstance[], graceMs: number, logger: Logger): Promise<number> {
  const closed = Promise.all(apps.map((app) => app.close()));
  // Node closes the connections that are idle when closing starts; a keep-alive connection whose request finishes
  // later would stay open until its keep-alive timeout, so idle ones are swept until everything is closed.
  const sweeper = setInterval(() => {
    for (const app of apps) app.server.closeIdleConnections();
  }, IDLE_SWEEP_MS);
  let timer: NodeJS.Timeout | undefined;
  const graceOver = new Promise<'grace-over'>((resolve) => {
    timer = setTimeout(() => resolve('grace-over'), graceMs);
  });
  const outcome = await Promise.race([closed.then(() => 'closed' as const), graceOver]);
  clearTimeout(timer);
  clearInterval(sweeper);
  if (outcome === 'closed') return 0;
  let cut = 0;
  for (const app of apps) {
    cut += await openConnections(app);
    app.server.closeAllConnections();
  }
  logger.warn({ graceMs, connections: cut }, 'in-flight requests did not finish in time; connections cut');
  await closed;
  return cut;
}

function openConnections(app: FastifyInstance): Promise<number> {
  return new Promise((resolve) => app.server.getConnections((error, count) => resolve(error ? 0 : count)));
}
