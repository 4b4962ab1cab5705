import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { openDaemon, type DaemonConfig } from '../../src/daemon.js';
import { cleanUpNetworking, defaultNetworkFlags, hostTraces } from '../helpers/network-host.js';
import { createSandbox, DaemonProcess, eventually } from '../helpers/sandbox.js';

// A runcd SIGKILLed in the middle of CNI ADD (between create and start): the restarted runcd finds a created
// container whose setup never finished, undoes what was done and sets it up again, so it starts with its network.
// The stall is a firewall "plugin" of this file's that parks until killed (its pid in a file); every other
// plugin is the real one. Own names, bridge and subnet (10.87.238.0/24); removed at teardown even on failure.
const sandbox = createSandbox('cnikill');
const DEFAULT_NET = { name: 'cnik-default', subnet: '10.87.238.0/24', bridge: 'cnik-br0' };
const config: DaemonConfig = { ...sandbox.config, network: { defaultNetwork: DEFAULT_NET } };
const pluginDir = join(sandbox.dir, 'plugins');
const hungPidFile = join(sandbox.dir, 'hung.pid');
const networkFlags = defaultNetworkFlags(DEFAULT_NET);

function killHungPlugin(): void {
  if (!existsSync(hungPidFile)) return;
  try {
    process.kill(Number(readFileSync(hungPidFile, 'utf8').trim()), 'SIGKILL');
  } catch {
    // already gone
  }
}

const stalled = new DaemonProcess(sandbox, [...networkFlags, '--cni-plugin-dir', pluginDir]);
const restarted = new DaemonProcess(sandbox, networkFlags);
t.teardown(async () => {
  killHungPlugin();
  await stalled.stop('SIGKILL');
  await stalled.close();
  await restarted.close();
  await cleanUpNetworking(sandbox, [DEFAULT_NET.bridge], config);
});

t.test('a SIGKILL during CNI ADD: the restarted runcd sets the network up again', async (t) => {
  mkdirSync(pluginDir);
  for (const plugin of ['bridge', 'host-local', 'portmap'])
    symlinkSync(`/usr/lib/cni/${plugin}`, join(pluginDir, plugin));
  writeFileSync(
    join(pluginDir, 'firewall'),
    `#!/bin/sh\n[ "$CNI_COMMAND" = ADD ] || exec /usr/lib/cni/firewall\necho $$ > '${hungPidFile}'\nexec sleep 600\n`,
  );
  chmodSync(join(pluginDir, 'firewall'), 0o755);

  await stalled.start();
  const id = sandbox.id('web');
  const bundle = sandbox.bundle('web', ['httpd', '-f', '-p', '8080', '-h', '/www']);
  mkdirSync(join(bundle, 'rootfs', 'www'));
  writeFileSync(join(bundle, 'rootfs', 'www', 'index.html'), 'survived\n');
  const creating = stalled
    .request('POST', '/containers', {
      id,
      bundle,
      networks: [DEFAULT_NET.name],
      ports: [{ containerPort: 8080 }],
    })
    .catch((error: unknown) => error);
  await eventually(async () => (existsSync(hungPidFile) ? true : undefined), 30_000);
  await stalled.stop('SIGKILL');
  killHungPlugin();
  t.ok((await creating) instanceof Error, 'the create never answered');
  t.equal(
    hostTraces(sandbox, DEFAULT_NET.bridge, DEFAULT_NET.name, []).veths.length,
    1,
    'ADD had begun: a veth',
  );

  await restarted.start();
  const container = await restarted.request<{
    status: string;
    network?: { networks: Array<{ ipAddress: string | null }>; ports: Array<{ hostPort: number }> };
  }>('GET', `/containers/${id}`);
  t.equal(container.body.status, 'created', 'the create was finished');
  const ip = container.body.network?.networks[0]?.ipAddress;
  t.match(ip, /^10\.87\.238\.\d+$/, 'with its network set up again');
  const traces = hostTraces(sandbox, DEFAULT_NET.bridge, DEFAULT_NET.name, [id]);
  t.equal(traces.veths.length, 1, 'one veth: the half-done one was undone first');
  t.equal(traces.allocations.length, 1, 'one address');
  t.equal((await restarted.request('POST', `/containers/${id}/start`)).status, 200);
  const port = container.body.network!.ports[0]!.hostPort;
  const answer = await eventually(
    () =>
      fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5_000) })
        .then((response) => response.text())
        .catch(() => undefined),
    10_000,
  );
  t.equal(answer, 'survived\n');

  t.equal((await restarted.request('DELETE', `/containers/${id}?force=true`)).status, 204);
  t.same(hostTraces(sandbox, DEFAULT_NET.bridge, DEFAULT_NET.name, [id, `${ip}/32`]), {
    veths: [],
    rules: [],
    allocations: [],
    pins: [],
  });
  t.equal((await restarted.request('DELETE', `/networks/${DEFAULT_NET.name}`)).status, 204);
});

t.test('a plugin that fails: a 500 naming it, and no container, pin or address is left', async (t) => {
  const emptyDir = join(sandbox.dir, 'no-plugins');
  mkdirSync(emptyDir);
  const daemon = await openDaemon(
    { ...config, network: { ...config.network, pluginDirs: [emptyDir] } },
    pino({ level: 'silent' }),
  );
  t.teardown(() => daemon.close());
  const id = sandbox.id('broken');
  const answer = await daemon.app.inject({
    method: 'POST',
    url: '/containers',
    payload: { id, bundle: sandbox.bundle('broken'), start: true, networks: [DEFAULT_NET.name] },
  });
  t.equal(answer.statusCode, 500);
  t.match(answer.json(), {
    code: 'network_setup_failed',
    detail: /plugin bridge: plugin not found in .*no-plugins \(apt-get install containernetworking-plugins\)/,
  });
  t.equal(
    (await daemon.app.inject({ method: 'GET', url: `/containers/${id}` })).statusCode,
    404,
    'no container',
  );
  t.same(hostTraces(sandbox, DEFAULT_NET.bridge, DEFAULT_NET.name, [id]), {
    veths: [],
    rules: [],
    allocations: [],
    pins: [],
  });
  t.same(daemon.networks.get(DEFAULT_NET.name).containers, [], 'the network has no user left');
});
