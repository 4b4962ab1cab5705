import { accessSync, constants, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CLEAN_PATH } from './runtime/process-runner.js';

export interface Config {
  socket: string | undefined;
  tcp: { host: string; port: number } | undefined;
  stateDir: string;
  runtimeRoot: string;
  bundleRoots: string[];
  runtime: string;
  conmon: string;
  logLevel: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const FLAGS = {
  socket: { type: 'string' },
  tcp: { type: 'string' },
  'state-dir': { type: 'string' },
  'runtime-root': { type: 'string' },
  'bundle-root': { type: 'string', multiple: true },
  runtime: { type: 'string' },
  conmon: { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

export const USAGE = `usage: runcd [flags]   (each flag is also settable as RUNCD_<NAME>, e.g. RUNCD_STATE_DIR)
  --socket PATH        unix socket to listen on (default /run/runcd/runcd.sock; "" disables it)
  --tcp HOST:PORT      also listen on TCP (loopback addresses only; off by default)
  --state-dir DIR      database, container logs and exit files (default /var/lib/runcd)
  --runtime-root DIR   passed to every runtime call as --root (default /run/runcd/runc)
  --bundle-root DIR    bundles must resolve inside one of these; repeatable, or ":"-separated in the
                       environment (default /var/lib/runcd/bundles)
  --runtime PATH       OCI runtime binary (default runc from PATH; crun works too)
  --conmon PATH        conmon binary (default conmon from PATH)
  --log-level LEVEL    fatal, error, warn, info, debug, trace (default info)`;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export type ParsedCommandLine = { kind: 'help' } | { kind: 'version' } | { kind: 'run'; config: Config };

export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv): ParsedCommandLine {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };
  const pick = (flag: string | undefined, name: string): string | undefined => flag ?? env[`RUNCD_${name}`];

  const socketValue = pick(values.socket, 'SOCKET');
  const socket =
    socketValue === undefined ? '/run/runcd/runcd.sock' : socketValue === '' ? undefined : socketValue;
  const tcpValue = pick(values.tcp, 'TCP');
  const tcp = tcpValue ? parseTcp(tcpValue) : undefined;
  if (!socket && !tcp) throw new ConfigError('nothing to listen on: give --socket or --tcp');
  const stateDir = absolute(pick(values['state-dir'], 'STATE_DIR') ?? '/var/lib/runcd', '--state-dir');
  const bundleRoots = values['bundle-root'] ??
    env.RUNCD_BUNDLE_ROOT?.split(':').filter(Boolean) ?? [join(stateDir, 'bundles')];
  const logLevel = pick(values['log-level'], 'LOG_LEVEL') ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`--log-level must be one of ${LOG_LEVELS.join(', ')}; got "${logLevel}"`);
  }
  return {
    kind: 'run',
    config: {
      socket: socket ? absolute(socket, '--socket') : undefined,
      tcp,
      stateDir,
      runtimeRoot: absolute(
        pick(values['runtime-root'], 'RUNTIME_ROOT') ?? '/run/runcd/runc',
        '--runtime-root',
      ),
      bundleRoots: bundleRoots.map((root) => absolute(root, '--bundle-root')),
      runtime: pick(values.runtime, 'RUNTIME') ?? 'runc',
      conmon: pick(values.conmon, 'CONMON') ?? 'conmon',
      logLevel,
    },
  };
}

function parseTcp(value: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  if (!match) throw new ConfigError(`--tcp must be HOST:PORT (e.g. 127.0.0.1:7070); got "${value}"`);
  const host = (match[1] ?? match[2])!;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) throw new ConfigError(`--tcp port must be 1-65535; got ${port}`);
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
  if (!loopback) {
    throw new ConfigError(
      `--tcp ${value}: only loopback addresses are accepted, because the API runs containers as root and has no authentication on TCP yet`,
    );
  }
  return { host, port };
}

function absolute(path: string, flag: string): string {
  if (!isAbsolute(path)) throw new ConfigError(`${flag} must be an absolute path; got "${path}"`);
  return resolve(path);
}

const APT_PACKAGES: Readonly<Record<string, string>> = { runc: 'runc', crun: 'crun', conmon: 'conmon' };

/** Resolves a binary like the shell would, failing with the apt package to install when it is missing. */
export function resolveBinary(nameOrPath: string, what: string): string {
  const candidates = nameOrPath.includes('/')
    ? [resolve(nameOrPath)]
    : [...(process.env.PATH ?? '').split(delimiter), ...CLEAN_PATH.split(':')]
        .filter(Boolean)
        .map((dir) => join(dir, nameOrPath));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // try the next directory
    }
  }
  const pkg = APT_PACKAGES[nameOrPath.split('/').pop() ?? ''] ?? what;
  throw new ConfigError(
    `${what} "${nameOrPath}" not found${nameOrPath.includes('/') ? '' : ' in PATH'}; install it with: apt-get install -y ${pkg}`,
  );
}
