import { accessSync, constants, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseSubnet } from './network/subnets.js';
import { CLEAN_PATH } from './runtime/process-runner.js';
import { NETWORK_NAME_PATTERN } from './schemas/network.js';

export interface Config {
  socket: string | undefined;
  /** `--docker-socket PATH`: a second unix socket speaking the Docker Engine API (same mode and token rules). */
  dockerSocket: string | undefined;
  tcp: { host: string; port: number } | undefined;
  stateDir: string;
  runtimeRoot: string;
  bundleRoots: string[];
  runtime: string;
  conmon: string;
  logLevel: string;
  /** Require a bearer token on the unix socket too (TCP always does). */
  requireToken: boolean;
  /** Group (name or gid) that may use the unix socket; root's group when unset. */
  socketGroup: string | undefined;
  /** TLS for the TCP listener; mutual TLS with `clientCa`. Paths. */
  tls: { cert: string; key: string; clientCa: string | undefined } | undefined;
  /** `--policy FILE`: relaxations of the bundle policy. */
  policyFile: string | undefined;
  allowMountSources: string[];
  /** Requests per second per token (burst: twice that); 0 disables. */
  rateLimit: number;
  /** Runtime processes at once; up to 8 times as many wait before requests get 503. */
  maxRuntimeProcesses: number;
  /** Deadline of each runtime command. */
  runtimeTimeoutSeconds: number;
  /** Directories a managed bundle's rootfs may be copied from. */
  importRoots: string[];
  /** Bytes of regular files in one managed rootfs (import or upload). */
  maxRootfsBytes: number;
  /** CNI networking (issue 16). */
  network: NetworkFlags;
  /** `--insecure-registry HOST:PORT`: registries pulled from over plain HTTP (or TLS without verification). */
  insecureRegistries: string[];
  /** `--max-layer-bytes`: the largest layer a pull accepts, as the registry's manifest declares it. */
  maxLayerBytes: number | undefined;
}

export interface NetworkFlags {
  /** Where the CNI plugins are (CNI_PATH). */
  pluginDirs: string[];
  /** The bridge network made on first use: its name, subnet and bridge. */
  defaultNetwork: { name: string; subnet: string; bridge: string };
  /** The host address a published port gets when the caller names none. */
  publishHostIp: string;
  /** aardvark-dns, which resolves container names on user networks; "none": no name resolution. */
  aardvarkBinary: string;
  /** An operator's conflist directory: its networks are usable by name. */
  operatorConfigDir?: string | undefined;
}

/** Debian's containernetworking-plugins. */
export const DEFAULT_CNI_PLUGIN_DIR = '/usr/lib/cni';
/** Not Podman's 10.88.0.0/16 nor its user networks (10.89.0.0/24 and up), nor Docker's 172.17.0.0/16. */
export const DEFAULT_NETWORK = { name: 'runcd', subnet: '10.87.0.0/24', bridge: 'runcd0' };
/** Debian's aardvark-dns package (netavark's DNS server). */
export const DEFAULT_AARDVARK_BINARY = '/usr/lib/podman/aardvark-dns';

/** 1 GiB: a Debian or Alpine userland with room to spare; raise it for bigger images. */
export const DEFAULT_MAX_ROOTFS_BYTES = 1024 ** 3;
/** Debian's `tini` package: a static build, so it runs inside any rootfs. */
export const DEFAULT_INIT_BINARY = '/usr/bin/tini-static';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const FLAGS = {
  socket: { type: 'string' },
  'docker-socket': { type: 'string' },
  tcp: { type: 'string' },
  'state-dir': { type: 'string' },
  'runtime-root': { type: 'string' },
  'bundle-root': { type: 'string', multiple: true },
  runtime: { type: 'string' },
  conmon: { type: 'string' },
  'log-level': { type: 'string' },
  'require-token': { type: 'boolean' },
  'socket-group': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-client-ca': { type: 'string' },
  policy: { type: 'string' },
  'allow-mount-source': { type: 'string', multiple: true },
  'rate-limit': { type: 'string' },
  'max-runtime-processes': { type: 'string' },
  'runtime-timeout': { type: 'string' },
  'import-root': { type: 'string', multiple: true },
  'max-rootfs-bytes': { type: 'string' },
  'cni-plugin-dir': { type: 'string', multiple: true },
  'default-network': { type: 'string' },
  'default-network-subnet': { type: 'string' },
  'default-network-bridge': { type: 'string' },
  'publish-host-ip': { type: 'string' },
  'aardvark-dns': { type: 'string' },
  'cni-config-dir': { type: 'string' },
  'insecure-registry': { type: 'string', multiple: true },
  'max-layer-bytes': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

export const USAGE = `usage: runcd [flags]   (each flag is also settable as RUNCD_<NAME>, e.g. RUNCD_STATE_DIR)
       runcd token create --name NAME --scope read|operate|admin | token list | token revoke NAME
  --socket PATH        unix socket to listen on (default /run/runcd/runcd.sock; "" disables it)
  --docker-socket PATH also answer the Docker Engine API on this unix socket (docker CLI, dockerode)
  --socket-group GROUP group allowed to use the socket (mode 0660; default root's group)
  --require-token      require a bearer token on the unix socket too
  --tcp HOST:PORT      also listen on TCP; tokens are always required there, and any address but
                       loopback needs --tls-cert and --tls-key
  --tls-cert FILE      PEM certificate for the TCP listener
  --tls-key FILE       PEM private key for the TCP listener
  --tls-client-ca FILE PEM CA: clients must present a certificate it signed (mutual TLS)
  --state-dir DIR      database, tokens, audit log, container logs and exit files (default /var/lib/runcd)
  --runtime-root DIR   passed to every runtime call as --root (default /run/runcd/runc)
  --bundle-root DIR    bundles must resolve inside one of these; repeatable, or ":"-separated in the
                       environment (default /var/lib/runcd/bundles)
  --policy FILE        JSON relaxing the bundle policy for trusted callers (see README, Security)
  --allow-mount-source DIR  host directory bind mounts may come from; repeatable, ":"-separated in env
  --rate-limit N       requests per second per token, bursts of 2N (default 20; 0 disables)
  --max-runtime-processes N  runtime processes at once, 8N more may wait (default 8)
  --runtime-timeout S  seconds before a runtime command's process group is killed (default 60)
  --import-root DIR    directory managed bundles may copy a rootfs from (POST /bundles rootfs.path);
                       repeatable, ":"-separated in env (default none: tarball uploads only)
  --max-rootfs-bytes N largest managed rootfs, in bytes or with K, M, G suffix (default 1G)
  --cni-plugin-dir DIR where the CNI plugins are; repeatable, ":"-separated in env (default /usr/lib/cni)
  --default-network NAME  the bridge network made on first use (default runcd)
  --default-network-subnet CIDR  its subnet (default 10.87.0.0/24)
  --default-network-bridge NAME  its Linux bridge (default runcd0)
  --publish-host-ip IP host address of a published port that names none (default 127.0.0.1)
  --cni-config-dir DIR an operator's conflists (*.conflist), usable by their name as networks (default none)
  --aardvark-dns PATH  DNS server for container names on user networks (default
                       /usr/lib/podman/aardvark-dns; "none": names do not resolve)
  --insecure-registry HOST:PORT  registry pulled from over plain HTTP (or unverified TLS); repeatable,
                       ","-separated in env (default none)
  --max-layer-bytes N  largest image layer a pull downloads, as its manifest declares it; a larger one
                       is refused before any byte moves (default: --max-rootfs-bytes)
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
  const dockerSocket = pick(values['docker-socket'], 'DOCKER_SOCKET') || undefined;
  const tcpValue = pick(values.tcp, 'TCP');
  const tcp = tcpValue ? parseTcp(tcpValue) : undefined;
  if (!socket && !tcp) throw new ConfigError('nothing to listen on: give --socket or --tcp');
  const tls = parseTls(
    pick(values['tls-cert'], 'TLS_CERT'),
    pick(values['tls-key'], 'TLS_KEY'),
    pick(values['tls-client-ca'], 'TLS_CLIENT_CA'),
  );
  if (tls && !tcp)
    throw new ConfigError('--tls-cert and --tls-key only apply to --tcp; give --tcp HOST:PORT');
  if (tcp && !tls && !isLoopback(tcp.host)) {
    throw new ConfigError(
      `refusing --tcp ${tcpValue} without TLS: anyone who can reach that address could read the bearer tokens off the wire and run any program as root on this host; give --tls-cert and --tls-key (and --tls-client-ca for mutual TLS), or listen on 127.0.0.1`,
    );
  }
  const policyFile = pick(values.policy, 'POLICY');
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
      dockerSocket: dockerSocket ? absolute(dockerSocket, '--docker-socket') : undefined,
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
      requireToken: values['require-token'] ?? envBoolean(env.RUNCD_REQUIRE_TOKEN, '--require-token'),
      socketGroup: pick(values['socket-group'], 'SOCKET_GROUP') || undefined,
      tls,
      policyFile: policyFile ? absolute(policyFile, '--policy') : undefined,
      allowMountSources: (
        values['allow-mount-source'] ??
        env.RUNCD_ALLOW_MOUNT_SOURCE?.split(':').filter(Boolean) ??
        []
      ).map((dir) => absolute(dir, '--allow-mount-source')),
      rateLimit: number(pick(values['rate-limit'], 'RATE_LIMIT'), '--rate-limit', 20, 0),
      maxRuntimeProcesses: number(
        pick(values['max-runtime-processes'], 'MAX_RUNTIME_PROCESSES'),
        '--max-runtime-processes',
        8,
        1,
      ),
      runtimeTimeoutSeconds: number(
        pick(values['runtime-timeout'], 'RUNTIME_TIMEOUT'),
        '--runtime-timeout',
        60,
        1,
      ),
      importRoots: (values['import-root'] ?? env.RUNCD_IMPORT_ROOT?.split(':').filter(Boolean) ?? []).map(
        (dir) => absolute(dir, '--import-root'),
      ),
      maxRootfsBytes: byteSize(pick(values['max-rootfs-bytes'], 'MAX_ROOTFS_BYTES'), '--max-rootfs-bytes'),
      network: {
        pluginDirs: (
          values['cni-plugin-dir'] ??
          env.RUNCD_CNI_PLUGIN_DIR?.split(':').filter(Boolean) ?? [DEFAULT_CNI_PLUGIN_DIR]
        ).map((dir) => absolute(dir, '--cni-plugin-dir')),
        defaultNetwork: defaultNetwork(
          pick(values['default-network'], 'DEFAULT_NETWORK') ?? DEFAULT_NETWORK.name,
          pick(values['default-network-subnet'], 'DEFAULT_NETWORK_SUBNET') ?? DEFAULT_NETWORK.subnet,
          pick(values['default-network-bridge'], 'DEFAULT_NETWORK_BRIDGE') ?? DEFAULT_NETWORK.bridge,
        ),
        publishHostIp: ipv4(
          pick(values['publish-host-ip'], 'PUBLISH_HOST_IP') ?? '127.0.0.1',
          '--publish-host-ip',
        ),
        aardvarkBinary: aardvark(pick(values['aardvark-dns'], 'AARDVARK_DNS') ?? DEFAULT_AARDVARK_BINARY),
        ...(pick(values['cni-config-dir'], 'CNI_CONFIG_DIR')
          ? {
              operatorConfigDir: absolute(
                pick(values['cni-config-dir'], 'CNI_CONFIG_DIR')!,
                '--cni-config-dir',
              ),
            }
          : {}),
      },
      insecureRegistries: (
        values['insecure-registry'] ??
        env.RUNCD_INSECURE_REGISTRY?.split(',').filter(Boolean) ??
        []
      ).map(registryHost),
      maxLayerBytes: pick(values['max-layer-bytes'], 'MAX_LAYER_BYTES')
        ? byteSize(pick(values['max-layer-bytes'], 'MAX_LAYER_BYTES'), '--max-layer-bytes')
        : undefined,
    },
  };
}

/** `HOST[:PORT]` as dockerd's --insecure-registry takes it (no scheme, no path). */
function registryHost(value: string): string {
  if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$/.test(value)) {
    throw new ConfigError(`--insecure-registry ${value}: give HOST:PORT (no scheme, no path)`);
  }
  return value.toLowerCase();
}

const SIZE_SUFFIXES: Readonly<Record<string, number>> = {
  '': 1,
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
  T: 1024 ** 4,
};

/** `1073741824`, `512M`, `2G` (binary units); at least 1 MiB. */
export function byteSize(value: string | undefined, flag: string): number {
  if (value === undefined || value === '') return DEFAULT_MAX_ROOTFS_BYTES;
  const match = /^(\d+)([KMGT]?)i?B?$/i.exec(value.trim());
  const bytes = match ? Number(match[1]) * SIZE_SUFFIXES[match[2]!.toUpperCase()]! : NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1024 ** 2) {
    throw new ConfigError(
      `${flag} must be a size of at least 1M (bytes, or with K, M, G, T); got "${value}"`,
    );
  }
  return bytes;
}

function parseTls(
  cert: string | undefined,
  key: string | undefined,
  clientCa: string | undefined,
): Config['tls'] {
  if (!cert && !key && !clientCa) return undefined;
  if (!cert || !key) throw new ConfigError('--tls-cert and --tls-key go together; give both');
  return {
    cert: absolute(cert, '--tls-cert'),
    key: absolute(key, '--tls-key'),
    clientCa: clientCa ? absolute(clientCa, '--tls-client-ca') : undefined,
  };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

function defaultNetwork(name: string, subnet: string, bridge: string): NetworkFlags['defaultNetwork'] {
  if (!NETWORK_NAME_PATTERN.test(name) || name === 'none' || name === 'host') {
    throw new ConfigError(
      `--default-network must be a network name (A-Z a-z 0-9 _ . -), not none or host; got "${name}"`,
    );
  }
  if (!parseSubnet(subnet)) {
    throw new ConfigError(
      `--default-network-subnet must be IPv4 CIDR /8 to /29, host bits zero; got "${subnet}"`,
    );
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/.test(bridge)) {
    throw new ConfigError(
      `--default-network-bridge must be 1-15 characters of A-Z a-z 0-9 _ . -; got "${bridge}"`,
    );
  }
  return { name, subnet, bridge };
}

function ipv4(value: string, flag: string): string {
  if (isIP(value) !== 4) throw new ConfigError(`${flag} must be an IPv4 address; got "${value}"`);
  return value;
}

function envBoolean(value: string | undefined, flag: string): boolean {
  if (value === undefined || value === '' || value === '0' || value === 'false') return false;
  if (value === '1' || value === 'true') return true;
  throw new ConfigError(`${flag} (from the environment) must be true, false, 1 or 0; got "${value}"`);
}

function number(value: string | undefined, flag: string, fallback: number, minimum: number): number {
  if (value === undefined || value === '') return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < minimum || parsed > 1_000_000) {
    throw new ConfigError(`${flag} must be a whole number from ${minimum}; got "${value}"`);
  }
  return parsed;
}

function parseTcp(value: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  if (!match) throw new ConfigError(`--tcp must be HOST:PORT (e.g. 127.0.0.1:7070); got "${value}"`);
  const host = (match[1] ?? match[2])!;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) throw new ConfigError(`--tcp port must be 1-65535; got ${port}`);
  return { host, port };
}

function aardvark(value: string): string {
  return value === 'none' ? value : absolute(value, '--aardvark-dns');
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
