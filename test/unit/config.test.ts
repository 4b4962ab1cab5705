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
  t.throws(() => run(['--tcp', '0.0.0.0:7070']), /only loopback addresses/);
  t.throws(() => run(['--tcp', 'nonsense']), /HOST:PORT/);
  t.throws(() => run(['--state-dir', 'relative']), /--state-dir must be an absolute path/);
  t.throws(() => run(['--log-level', 'loud']), /--log-level must be one of/);
  t.throws(() => run(['--bogus']), ConfigError);
  t.throws(() => run(['--socket', '']), /nothing to listen on/);
});

t.test('a missing runtime names the apt package to install', async (t) => {
  t.throws(() => resolveBinary('definitely-not-runc', 'runtime'), /not found in PATH/);
  t.throws(() => resolveBinary('/nonexistent/runc', 'runtime'), /apt-get install -y runc/);
  t.throws(() => resolveBinary('/nonexistent/conmon', 'conmon'), /apt-get install -y conmon/);
});
