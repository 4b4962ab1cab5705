import t from 'tap';
import { ConfigError, parseCommandLine, resolveBinary } from '../../src/config.js';

const run = (argv: string[], env: Record<string, string> = {}) => {
  const parsed = parseCommandLine(argv, env);
  if (parsed.kind !== 'run') throw new Error('expected a run config');
  return parsed.config;
};

t.test('defaults follow the documented layout', async (t) => {
  t.match(run([]), {
    socket: '/run/runcd/runcd.sock',
    tcp: undefined,
    stateDir: '/var/lib/runcd',
    runtimeRoot: '/run/runcd/runc',
    bundleRoots: ['/var/lib/runcd/bundles'],
    runtime: 'runc',
    conmon: 'conmon',
    logLevel: 'info',
  });
});

t.test('flags win over RUNCD_ environment variables', async (t) => {
  const config = run(['--state-dir', '/srv/runcd', '--bundle-root', '/a', '--bundle-root', '/b'], {
    RUNCD_STATE_DIR: '/ignored',
    RUNCD_SOCKET: '/tmp/x.sock',
    RUNCD_TCP: '127.0.0.1:7070',
  });
  t.equal(config.stateDir, '/srv/runcd');
  t.same(config.bundleRoots, ['/a', '/b']);
  t.equal(config.socket, '/tmp/x.sock');
  t.same(config.tcp, { host: '127.0.0.1', port: 7070 });
  t.same(run([], { RUNCD_BUNDLE_ROOT: '/x:/y' }).bundleRoots, ['/x', '/y']);
});

t.test('bad configuration fails with a message that names the flag', async (t) => {
  t.throws(
    () => run(['--tcp', '0.0.0.0:7070']),
    /refusing --tcp 0.0.0.0:7070 without TLS: anyone who can reach/,
  );
  t.throws(() => run(['--tcp', '[2001:db8::1]:7070']), /without TLS/);
  t.throws(() => run(['--tls-cert', '/c.pem', '--tls-key', '/k.pem']), /only apply to --tcp/);
  t.throws(
    () => run(['--tcp', '0.0.0.0:7070', '--tls-cert', '/c.pem']),
    /--tls-cert and --tls-key go together/,
  );
  t.throws(() => run(['--rate-limit=-1']), /--rate-limit must be a whole number/);
  t.throws(() => run(['--max-runtime-processes', '0']), /--max-runtime-processes/);
  t.throws(() => run([], { RUNCD_REQUIRE_TOKEN: 'yes' }), /--require-token/);
  t.throws(() => run(['--tcp', 'nonsense']), /HOST:PORT/);
  t.throws(() => run(['--state-dir', 'relative']), /--state-dir must be an absolute path/);
  t.throws(() => run(['--log-level', 'loud']), /--log-level must be one of/);
  t.throws(() => run(['--bogus']), ConfigError);
  t.throws(() => run(['--socket', '']), /nothing to listen on/);
});

t.test('TCP: plain on loopback, TLS (optionally mutual) anywhere', async (t) => {
  t.same(run(['--tcp', '127.0.0.1:7070']).tcp, { host: '127.0.0.1', port: 7070 });
  t.same(run(['--tcp', '[::1]:7070']).tcp, { host: '::1', port: 7070 });
  const tls = run([
    '--tcp',
    '0.0.0.0:7443',
    '--tls-cert',
    '/etc/runcd/c.pem',
    '--tls-key',
    '/etc/runcd/k.pem',
  ]);
  t.same(tls.tcp, { host: '0.0.0.0', port: 7443 });
  t.same(tls.tls, { cert: '/etc/runcd/c.pem', key: '/etc/runcd/k.pem', clientCa: undefined });
  const mutual = run([], {
    RUNCD_TCP: '192.0.2.1:7443',
    RUNCD_TLS_CERT: '/c.pem',
    RUNCD_TLS_KEY: '/k.pem',
    RUNCD_TLS_CLIENT_CA: '/ca.pem',
  });
  t.equal(mutual.tls?.clientCa, '/ca.pem');
});

t.test('security flags and their defaults', async (t) => {
  t.match(run([]), {
    requireToken: false,
    socketGroup: undefined,
    tls: undefined,
    policyFile: undefined,
    allowMountSources: [],
    rateLimit: 20,
    maxRuntimeProcesses: 8,
    runtimeTimeoutSeconds: 60,
  });
  t.match(
    run([
      '--require-token',
      '--socket-group',
      'runcd',
      '--policy',
      '/etc/runcd/policy.json',
      '--allow-mount-source',
      '/srv/a',
      '--allow-mount-source',
      '/srv/b',
      '--rate-limit',
      '0',
    ]),
    {
      requireToken: true,
      socketGroup: 'runcd',
      policyFile: '/etc/runcd/policy.json',
      allowMountSources: ['/srv/a', '/srv/b'],
      rateLimit: 0,
    },
  );
  t.same(run([], { RUNCD_ALLOW_MOUNT_SOURCE: '/x:/y' }).allowMountSources, ['/x', '/y']);
  t.equal(run([], { RUNCD_REQUIRE_TOKEN: '1' }).requireToken, true);
});

t.test('a missing runtime names the apt package to install', async (t) => {
  t.throws(() => resolveBinary('definitely-not-runc', 'runtime'), /not found in PATH/);
  t.throws(() => resolveBinary('/nonexistent/runc', 'runtime'), /apt-get install -y runc/);
  t.throws(() => resolveBinary('/nonexistent/conmon', 'conmon'), /apt-get install -y conmon/);
});

t.test('--import-root and --max-rootfs-bytes', async (t) => {
  t.same(run([]).importRoots, [], 'no import root unless given');
  t.equal(run([]).maxRootfsBytes, 1024 ** 3, '1 GiB by default');
  t.same(run(['--import-root', '/srv/images', '--import-root', '/srv/more']).importRoots, [
    '/srv/images',
    '/srv/more',
  ]);
  t.same(run([], { RUNCD_IMPORT_ROOT: '/a:/b' }).importRoots, ['/a', '/b']);
  t.equal(run(['--max-rootfs-bytes', '512M']).maxRootfsBytes, 512 * 1024 ** 2);
  t.equal(run(['--max-rootfs-bytes', '2GiB']).maxRootfsBytes, 2 * 1024 ** 3);
  t.equal(run([], { RUNCD_MAX_ROOTFS_BYTES: '10485760' }).maxRootfsBytes, 10485760);
  t.throws(() => run(['--import-root', 'relative']), /--import-root must be an absolute path/);
  t.throws(() => run(['--max-rootfs-bytes', 'lots']), /--max-rootfs-bytes must be a size of at least 1M/);
  t.throws(() => run(['--max-rootfs-bytes', '1000']), /at least 1M/);
});

t.test(
  '--insecure-registry is repeatable, comma-separated in the environment, and only HOST[:PORT]',
  async (t) => {
    const parse = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
      const parsed = parseCommandLine(['--socket', '/tmp/x.sock', ...argv], env);
      return parsed.kind === 'run' ? parsed.config.insecureRegistries : undefined;
    };
    t.same(parse([]), []);
    t.same(parse(['--insecure-registry', '127.0.0.1:5000', '--insecure-registry', 'Reg.local']), [
      '127.0.0.1:5000',
      'reg.local',
    ]);
    t.same(parse([], { RUNCD_INSECURE_REGISTRY: '127.0.0.1:5000,10.0.0.1:80' }), [
      '127.0.0.1:5000',
      '10.0.0.1:80',
    ]);
    t.throws(() => parse(['--insecure-registry', 'http://127.0.0.1:5000']), /give HOST:PORT/);
    t.throws(() => parse(['--insecure-registry', '127.0.0.1:5000/path']), /give HOST:PORT/);
  },
);
