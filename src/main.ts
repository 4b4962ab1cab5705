import { connect } from 'node:net';
import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import pino from 'pino';
import { ConfigError, USAGE, parseCommandLine, resolveBinary, type Config } from './config.js';
import { openDaemon } from './daemon.js';
import { RUNCD_VERSION } from './version.js';

async function main(): Promise<void> {
  let config: Config;
  let runtimeBinary: string;
  let conmonBinary: string;
  try {
    const parsed = parseCommandLine(process.argv.slice(2), process.env);
    if (parsed.kind === 'help') {
      console.log(USAGE);
      return;
    }
    if (parsed.kind === 'version') {
      console.log(`runcd ${RUNCD_VERSION}`);
      return;
    }
    config = parsed.config;
    runtimeBinary = resolveBinary(config.runtime, 'runtime');
    conmonBinary = resolveBinary(config.conmon, 'conmon');
    if (config.socket) await prepareSocketPath(config.socket);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`runcd: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }

  const logger = pino({ level: config.logLevel, base: { service: 'runcd' } });
  const daemon = await openDaemon({ ...config, runtimeBinary, conmonBinary }, logger);
  if (config.socket) {
    await daemon.app.listen({ path: config.socket });
    await chmod(config.socket, 0o660);
  }
  if (config.tcp) {
    // listen() on a second address: fastify only listens once, so the TCP listener is its own server.
    await daemon.app.listen({ host: config.tcp.host, port: config.tcp.port }).catch(async (error: Error) => {
      logger.fatal({ err: error }, 'cannot listen on tcp');
      throw error;
    });
  }
  logger.info(
    {
      socket: config.socket,
      tcp: config.tcp,
      stateDir: config.stateDir,
      runtime: runtimeBinary,
      version: RUNCD_VERSION,
    },
    'runcd ready',
  );

  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down; containers keep running');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    daemon
      .close()
      .then(() => process.exit(0))
      .catch((error: unknown) => {
        logger.error({ err: error }, 'error during shutdown');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

/** A stale socket from a crashed daemon is removed; a live one means another runcd owns it. */
async function prepareSocketPath(socket: string): Promise<void> {
  await mkdir(dirname(socket), { recursive: true, mode: 0o750 });
  const existing = await stat(socket).catch(() => undefined);
  if (!existing) return;
  if (!existing.isSocket()) throw new ConfigError(`--socket ${socket} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect(socket);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new ConfigError(`another daemon is already listening on ${socket}`);
  await rm(socket, { force: true });
}

main().catch((error: unknown) => {
  console.error(`runcd: ${(error as Error).message}`);
  process.exit(1);
});
