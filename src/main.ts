import { readFile } from 'node:fs/promises';
import { runTokenCommand } from './cli/token-command.js';
import { ConfigError, USAGE, parseCommandLine, resolveBinary, type Config } from './config.js';
import { DEFAULT_SHUTDOWN_GRACE_MS, openDaemon, type DaemonConfig } from './daemon.js';
import { createLogger } from './observability/logger.js';
import { guardProcess } from './observability/process-guard.js';
import { closeInheritedDescriptors } from './runtime/process-runner.js';
import { loadPolicyFile, PolicyFileError } from './bundle-checks/bundle-policy.js';
import {
  listenPrivately,
  prepareSocketPath,
  resolveGroup,
  secureSocket,
  SocketSetupError,
} from './security/unix-socket.js';
import { RUNCD_VERSION } from './version.js';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'token') {
    process.exitCode = runTokenCommand(argv.slice(1), process.env, {
      out: (line) => console.log(line),
      err: (line) => console.error(line),
    });
    return;
  }

  let config: Config;
  let daemonConfig: DaemonConfig;
  let socketGid: number;
  let socketWarnings: string[] = [];
  try {
    const parsed = parseCommandLine(argv, process.env);
    if (parsed.kind === 'help') {
      console.log(USAGE);
      return;
    }
    if (parsed.kind === 'version') {
      console.log(`runcd ${RUNCD_VERSION}`);
      return;
    }
    config = parsed.config;
    const readTlsFile = (path: string, flag: string) =>
      readFile(path).catch((error: Error) => {
        throw new ConfigError(`${flag} ${path}: ${error.message}`);
      });
    daemonConfig = {
      stateDir: config.stateDir,
      runtimeRoot: config.runtimeRoot,
      bundleRoots: config.bundleRoots,
      runtimeBinary: resolveBinary(config.runtime, 'runtime'),
      conmonBinary: resolveBinary(config.conmon, 'conmon'),
      socket: config.socket,
      dockerSocket: config.dockerSocket,
      docker: config.dockerSocket !== undefined,
      requireToken: config.requireToken,
      tcp: config.tcp,
      tls: config.tls && {
        cert: await readTlsFile(config.tls.cert, '--tls-cert'),
        key: await readTlsFile(config.tls.key, '--tls-key'),
        clientCa: config.tls.clientCa ? await readTlsFile(config.tls.clientCa, '--tls-client-ca') : undefined,
      },
      policy: config.policyFile ? await loadPolicyFile(config.policyFile) : {},
      allowMountSources: config.allowMountSources,
      rateLimitPerSecond: config.rateLimit,
      processLimits: { maxConcurrent: config.maxRuntimeProcesses, maxQueued: config.maxRuntimeProcesses * 8 },
      runtimeTimeoutMs: config.runtimeTimeoutSeconds * 1000,
      importRoots: config.importRoots,
      maxRootfsBytes: config.maxRootfsBytes,
      network: config.network,
      insecureRegistries: config.insecureRegistries,
      maxLayerBytes: config.maxLayerBytes,
    };
    socketGid = config.socketGroup ? resolveGroup(config.socketGroup) : (process.getgid?.() ?? 0);
    if (config.socket) socketWarnings = await prepareSocketPath(config.socket, socketGid);
    if (config.dockerSocket) {
      socketWarnings.push(...(await prepareSocketPath(config.dockerSocket, socketGid)));
    }
  } catch (error) {
    if (
      error instanceof ConfigError ||
      error instanceof PolicyFileError ||
      error instanceof SocketSetupError
    ) {
      console.error(`runcd: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }

  const logger = createLogger({ level: config.logLevel });
  const inherited = closeInheritedDescriptors();
  if (inherited.length > 0) logger.info({ fds: inherited }, 'closed inherited file descriptors');
  const daemon = await openDaemon(daemonConfig, logger);
  for (const warning of socketWarnings) logger.warn(warning);
  for (const relaxation of daemon.policy.relaxations()) logger.warn({ relaxation }, 'bundle policy relaxed');
  const runtime = daemon.runtimeSecurity;
  logger.info(
    {
      runtime: runtime.runtime,
      version: runtime.version,
      package: runtime.package,
      advisories: runtime.advisories,
    },
    'runtime version',
  );
  for (const warning of runtime.warnings)
    logger.warn({ runtime: runtime.runtime }, `runtime security: ${warning}`);

  try {
    if (config.socket) {
      const socket = config.socket;
      await listenPrivately(() => daemon.app.listen({ path: socket }));
      await secureSocket(socket, socketGid);
    }
    if (config.dockerSocket && daemon.dockerApp) {
      const dockerSocket = config.dockerSocket;
      const dockerApp = daemon.dockerApp;
      await listenPrivately(() => dockerApp.listen({ path: dockerSocket }));
      await secureSocket(dockerSocket, socketGid);
    }
    if (config.tcp && daemon.tcpApp) {
      await daemon.tcpApp.listen({ host: config.tcp.host, port: config.tcp.port });
      if (daemon.tokens.all().length === 0) {
        logger.warn(
          'no API tokens exist: every TCP request is refused until one is made with `runcd token create`',
        );
      }
    }
  } catch (error) {
    logger.fatal({ err: error }, 'cannot listen');
    await daemon.close().catch(() => undefined);
    console.error(`runcd: ${(error as Error).message}`);
    process.exit(1);
  }
  logger.info(
    {
      socket: config.socket,
      dockerSocket: config.dockerSocket,
      tcp: config.tcp,
      tls: config.tls ? { mutual: config.tls.clientCa !== undefined } : undefined,
      requireToken: config.requireToken || undefined,
      stateDir: config.stateDir,
      runtime: daemonConfig.runtimeBinary,
      version: RUNCD_VERSION,
    },
    'runcd ready',
  );
  guardProcess(logger);

  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info(
      { signal, graceMs: DEFAULT_SHUTDOWN_GRACE_MS },
      'shutting down: no new connections, finishing in-flight requests; containers keep running',
    );
    // A backstop only: close() itself cuts what is left after the grace period.
    const force = setTimeout(() => process.exit(1), DEFAULT_SHUTDOWN_GRACE_MS + 3_000);
    force.unref();
    daemon
      .close({ graceMs: DEFAULT_SHUTDOWN_GRACE_MS })
      .then((report) => {
        logger.info({ cutConnections: report.cutConnections }, 'runcd stopped');
        logger.flush();
        process.exit(0);
      })
      .catch((error: unknown) => {
        logger.error({ err: error }, 'error during shutdown');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  console.error(`runcd: ${(error as Error).message}`);
  process.exit(1);
});
