import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { openDaemon, type Daemon, type DaemonConfig } from '../../src/daemon.js';
import { cleanUpNetworking, defaultNetworkFlags, hostTraces } from '../helpers/network-host.js';
import { client, createSandbox, DaemonProcess, eventually, RUNTIME_BINARY } from '../helpers/sandbox.js';

// CNI networking between create and start (issue 16). Everything here is this file's own: network names, bridges,
// subnets (10.87.23x.0/24), the IPAM directory (under the sandbox's state dir), and traffic goes only to
// 127.0.0.1 and to addresses on these bridges. The teardown removes it all even when a test fails.
const sandbox = createSandbox('cninet');
const DEFAULT_NET = { name: 'cnit-default', subnet: '10.87.231.0/24', bridge: 'cnit-br0' };
const USER_NET = { name: 'cnit-user', subnet: '10.87.232.0/24', bridge: 'cnit-br1' };
const config: DaemonConfig = { ...sandbox.config, network: { defaultNetwork: DEFAULT_NET } };
const silent = pino({ level: process.env.RUNCD_TEST_LOG ?? 'silent' });
let daemon: Daemon | undefined;
t.teardown(async () => {
  await daemon?.close();
  daemon = undefined;
  await cleanUpNetworking(sandbox, [DEFAULT_NET.bridge, USER_NET.bridge, 'cnit-auto0'], config);
});

interface Endpoint {
  network: string;
  interface: string;
  ipAddress: string | null;
  prefixLength: number | null;
  gateway: string | null;
  macAddress: string | null;
}
interface ContainerBody {
  id: string;
  status: string;
  network?: {
    networks: Endpoint[];
    ports: Array<{ hostIp: string; hostPort: number; containerPort: number; protocol: string }>;
  };
  code?: string;
  detail?: string;
}

/** A busybox httpd serving `text` on port 8080, with a /etc/hosts of the caller's own in its rootfs. */
function webBundle(name: string, text: string): string {
  const path = sandbox.bundle(name, ['httpd', '-f', '-p', '8080', '-h', '/www']);
  mkdirSync(join(path, 'rootfs', 'www'), { recursive: true });
  writeFileSync(join(path, 'rootfs', 'www', 'index.html'), text);
  mkdirSync(join(path, 'rootfs', 'etc'), { recursive: true });
  writeFileSync(join(path, 'rootfs', 'etc', 'hosts'), 'caller-hosts\n');
  return path;
}

async function httpGet(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return response.text();
}

/** Asks until httpd is listening: start returns when the process runs, not when it has bound its port. */
async function fetchEventually(url: string): Promise<string> {
  return eventually(() => httpGet(url).catch(() => undefined), 10_000);
}

function traces(needles: string[], bridge = DEFAULT_NET.bridge, network = DEFAULT_NET.name) {
  return hostTraces(sandbox, bridge, network, needles);
}

const api = () => client(daemon!);

t.test('in-process daemon', async (t) => {
  daemon = await openDaemon(config, silent);

  t.test('networks: create, list, inspect, refusals, delete', async (t) => {
    const created = await api().post('/networks', { ...USER_NET });
    t.equal(created.status, 201, JSON.stringify(created.body));
    t.match(created.body, {
      ...USER_NET,
      gateway: '10.87.232.1',
      driver: 'bridge',
      default: false,
      containers: [],
    });
    t.equal(created.headers.location, `/networks/${USER_NET.name}`);
    const conflist = JSON.parse(
      readFileSync(join(sandbox.stateDir, 'cni', 'net.d', `${USER_NET.name}.conflist`), 'utf8'),
    ) as { plugins: Array<{ type: string }> };
    t.same(
      conflist.plugins.map((plugin) => plugin.type),
      ['bridge', 'portmap', 'firewall'],
      'the conflist runcd wrote',
    );
    t.match((await api().get(`/networks/${USER_NET.name}`)).body, { subnet: USER_NET.subnet });
    t.ok(
      (await api().get<Array<{ name: string }>>('/networks')).body.some(
        (each) => each.name === USER_NET.name,
      ),
    );

    const refusals: Array<[unknown, number, string, RegExp]> = [
      [{ ...USER_NET }, 409, 'network_exists', /already exists/],
      [
        { name: 'cnit-x', subnet: '10.87.232.128/25' },
        409,
        'network_subnet_overlap',
        /overlaps network "cnit-user"/,
      ],
      [{ name: 'cnit-x', subnet: '127.0.0.0/8' }, 409, 'network_subnet_overlap', /host interface lo/],
      [{ name: 'cnit-x', subnet: '10.87.233.1/24' }, 400, 'network_subnet_invalid', /host bits zero/],
      [{ name: 'cnit-x', subnet: '10.87.0.0/30' }, 400, 'network_subnet_invalid', /\/8 to \/29/],
      [
        { name: 'cnit-x', subnet: '10.87.233.0/24', bridge: USER_NET.bridge },
        409,
        'network_bridge_taken',
        /cnit-user/,
      ],
      [
        { name: 'cnit-x', subnet: '10.87.233.0/24', bridge: 'lo' },
        409,
        'network_bridge_taken',
        /exists on the host/,
      ],
      [{ name: 'none' }, 400, 'network_reserved_name', /network mode/],
      [{ name: 'bad/name' }, 400, 'invalid_network_name', /network name/],
      [{ name: 'cnit-x', bridge: 'a-bridge-name-too-long' }, 400, 'invalid_body', /bridge/],
    ];
    for (const [body, status, code, detail] of refusals) {
      const answer = await api().post('/networks', body);
      t.equal(answer.status, status, `${JSON.stringify(body)}: ${JSON.stringify(answer.body)}`);
      t.match(answer.body, { code, detail });
    }
    t.equal((await api().get('/networks/cnit-x')).status, 404, 'no refused network was stored');
    t.match(await api().get('/networks/no-such-net'), { status: 404, body: { code: 'network_not_found' } });

    const auto = await api().post('/networks', { name: 'cnit-auto', bridge: 'cnit-auto0' });
    t.equal(auto.status, 201);
    t.match(auto.body, { subnet: /^10\.87\.\d+\.0\/24$/ });
    t.not(auto.body.subnet, USER_NET.subnet, 'a free subnet was chosen');
    t.equal((await api().delete('/networks/cnit-auto')).status, 204);
    t.notOk(existsSync(join(sandbox.stateDir, 'cni', 'net.d', 'cnit-auto.conflist')), 'its conflist is gone');
    t.equal((await api().get('/networks/cnit-auto')).status, 404);
  });

  const webId = sandbox.id('web');
  let web: ContainerBody;

  t.test('a published port answers on 127.0.0.1 and on the container address', async (t) => {
    const bundle = webBundle('web', 'hello-from-cnit\n');
    const answer = await api().post<ContainerBody>('/containers', {
      id: webId,
      bundle,
      start: true,
      networks: [DEFAULT_NET.name],
      ports: [{ containerPort: 8080 }],
    });
    t.equal(answer.status, 201, JSON.stringify(answer.body));
    web = answer.body;
    const [endpoint] = web.network!.networks;
    t.match(endpoint, {
      network: DEFAULT_NET.name,
      interface: 'eth0',
      ipAddress: /^10\.87\.231\.\d+$/,
      prefixLength: 24,
      gateway: '10.87.231.1',
      macAddress: /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/,
    });
    const [port] = web.network!.ports;
    t.match(port, { hostIp: '127.0.0.1', hostPort: Number, containerPort: 8080, protocol: 'tcp' });
    t.ok(port!.hostPort > 0, 'an ephemeral host port was chosen and reported');
    t.same((await api().get<ContainerBody>(`/containers/${webId}`)).body.network, web.network);
    const listed = await api().get<ContainerBody[]>('/containers');
    t.same(
      listed.body.find((each) => each.id === webId)?.network,
      web.network,
      'GET /containers shows it too',
    );
    t.match((await api().get(`/networks/${DEFAULT_NET.name}`)).body, {
      default: true,
      bridge: DEFAULT_NET.bridge,
      containers: [webId],
    });

    t.equal(
      await fetchEventually(`http://127.0.0.1:${port!.hostPort}/`),
      'hello-from-cnit\n',
      'via 127.0.0.1',
    );
    t.equal(await httpGet(`http://${endpoint!.ipAddress}:8080/`), 'hello-from-cnit\n', 'via its own address');

    const files = await api().post<{ exitCode: number; stdout: string }>(`/containers/${webId}/exec`, {
      args: ['cat', '/etc/hosts', '/etc/resolv.conf'],
    });
    t.equal(files.body.exitCode, 0);
    t.match(
      files.body.stdout,
      new RegExp(`^${endpoint!.ipAddress!.replace(/\./g, '\\.')}\\t.*${webId}$`, 'm'),
    );
    t.match(files.body.stdout, /^127\.0\.0\.1\tlocalhost$/m);
    t.notMatch(files.body.stdout, /^nameserver\s+127\./m, 'no loopback nameserver');
    t.notMatch(files.body.stdout, /caller-hosts/, "runcd's hosts file is what the container sees");
    t.equal(
      readFileSync(join(bundle, 'rootfs', 'etc', 'hosts'), 'utf8'),
      'caller-hosts\n',
      "the caller's rootfs is untouched",
    );

    const inUse = await api().delete(`/networks/${DEFAULT_NET.name}`);
    t.match(inUse, { status: 409, body: { code: 'network_in_use', detail: new RegExp(webId) } });
  });

  t.test('network none has loopback only', async (t) => {
    const id = sandbox.id('none');
    const answer = await api().post<ContainerBody>('/containers', {
      id,
      bundle: sandbox.bundle('none'),
      start: true,
    });
    t.equal(answer.status, 201);
    t.equal(answer.body.network, undefined, 'no network state for network none');
    const devices = await api().post<{ stdout: string }>(`/containers/${id}/exec`, {
      args: ['cat', '/proc/net/dev'],
    });
    const names = devices.body.stdout
      .split('\n')
      .slice(2)
      .map((line) => line.split(':')[0]!.trim())
      .filter(Boolean);
    t.same(names, ['lo']);
    const explicit = await api().post<ContainerBody>('/containers', {
      id: sandbox.id('none2'),
      bundle: sandbox.bundle('none2'),
      networks: ['none'],
    });
    t.equal(explicit.status, 201);
    t.equal(explicit.body.network, undefined);
    for (const each of [id, sandbox.id('none2')])
      t.equal((await api().delete(`/containers/${each}?force=true`)).status, 204);
  });

  t.test('two containers on one network reach each other', async (t) => {
    const serverId = sandbox.id('peer-srv');
    const clientId = sandbox.id('peer-cli');
    const server = await api().post<ContainerBody>('/containers', {
      id: serverId,
      bundle: webBundle('peer-srv', 'hello-peer\n'),
      start: true,
      networks: [USER_NET.name],
    });
    t.equal(server.status, 201, JSON.stringify(server.body));
    const peer = await api().post<ContainerBody>('/containers', {
      id: clientId,
      bundle: sandbox.bundle('peer-cli'),
      start: true,
      networks: [USER_NET.name, DEFAULT_NET.name],
    });
    t.equal(peer.status, 201, JSON.stringify(peer.body));
    t.same(
      peer.body.network!.networks.map((each) => [each.network, each.interface]),
      [
        [USER_NET.name, 'eth0'],
        [DEFAULT_NET.name, 'eth1'],
      ],
      'one interface per network, in order',
    );
    const serverIp = server.body.network!.networks[0]!.ipAddress!;
    const fetched = await eventually(async () => {
      const answer = await api().post<{ exitCode: number; stdout: string }>(`/containers/${clientId}/exec`, {
        // nc, not wget: busybox-static's wget crashes in glibc's static resolver, even for a numeric address.
        args: ['sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${serverIp} 8080`],
      });
      return answer.body.exitCode === 0 && answer.body.stdout.includes('200 OK')
        ? answer.body.stdout.split('\r\n\r\n')[1]
        : undefined;
    }, 10_000);
    t.equal(fetched, 'hello-peer\n');
    for (const id of [clientId, serverId])
      t.equal((await api().delete(`/containers/${id}?force=true`)).status, 204);
    t.same(traces([serverId, clientId, serverIp], USER_NET.bridge, USER_NET.name), {
      veths: [],
      rules: [],
      allocations: [],
      pins: [],
    });
  });

  t.test('bad requests are 4xx naming the problem, and create nothing', async (t) => {
    const before = traces([]);
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen({ host: '127.0.0.1', port: 0 }, resolve));
    t.teardown(() => holder.close());
    const heldPort = (holder.address() as { port: number }).port;
    const webPort = web.network!.ports[0]!.hostPort;
    const bundle = sandbox.bundle('refused');
    const id = sandbox.id('refused');
    const cases: Array<[Record<string, unknown>, number, string, RegExp]> = [
      [{ networks: ['cnit-nowhere'] }, 404, 'network_not_found', /cnit-nowhere/],
      [
        { networks: [DEFAULT_NET.name], ports: [{ hostPort: heldPort, containerPort: 80 }] },
        409,
        'port_in_use',
        new RegExp(`127\\.0\\.0\\.1:${heldPort}/tcp`),
      ],
      [
        { networks: [DEFAULT_NET.name], ports: [{ hostPort: webPort, containerPort: 80 }] },
        409,
        'port_in_use',
        new RegExp(`${webPort}.*${webId}`),
      ],
      [{ ports: [{ containerPort: 80 }] }, 400, 'invalid_port_mapping', /give networks/],
      [
        { networks: [DEFAULT_NET.name], ports: [{ hostPort: 70000, containerPort: 80 }] },
        400,
        'invalid_body',
        /hostPort/,
      ],
      [
        { networks: [DEFAULT_NET.name], ports: [{ containerPort: 80, protocol: 'sctp' }] },
        400,
        'invalid_body',
        /protocol/,
      ],
      [
        { networks: [DEFAULT_NET.name], ports: [{ containerPort: 80, hostIp: 'localhost' }] },
        400,
        'invalid_body',
        /hostIp/,
      ],
      [
        {
          networks: [DEFAULT_NET.name],
          ports: [
            { hostPort: heldPort + 1, containerPort: 80 },
            { hostPort: heldPort + 1, containerPort: 81 },
          ],
        },
        400,
        'invalid_port_mapping',
        /published twice/,
      ],
      [{ networks: ['none', DEFAULT_NET.name] }, 400, 'invalid_body', /cannot be combined/],
      [{ networks: [DEFAULT_NET.name, DEFAULT_NET.name] }, 400, 'invalid_body', /given twice/],
      [{ networks: ['bad/net'] }, 400, 'invalid_body', /network name/],
    ];
    for (const [fields, status, code, detail] of cases) {
      const answer = await api().post('/containers', { id, bundle, start: true, ...fields });
      t.equal(answer.status, status, `${JSON.stringify(fields)}: ${JSON.stringify(answer.body)}`);
      t.match(answer.body, { code, detail });
      t.equal((await api().get(`/containers/${id}`)).status, 404, 'no container was created');
    }
    const shared = sandbox.bundle('hostnet', ['sleep', '999999'], (spec) => {
      const linux = spec.linux as { namespaces: Array<{ type: string }> };
      linux.namespaces = linux.namespaces.filter((namespace) => namespace.type !== 'network');
    });
    const hostNet = await api().post('/containers', { id, bundle: shared, networks: [DEFAULT_NET.name] });
    t.ok(
      hostNet.status === 400 || hostNet.status === 403,
      `a bundle without its own netns: ${hostNet.status}`,
    );
    t.equal((await api().get(`/containers/${id}`)).status, 404);
    t.same(
      traces([id]),
      { veths: before.veths, rules: [], allocations: before.allocations, pins: [] },
      'no veth, rule, address or pin was made',
    );
  });

  t.test('stop, restart and delete set up and tear down again, leaving nothing', async (t) => {
    const ip = web.network!.networks[0]!.ipAddress!;
    t.equal(traces([webId]).veths.length, 1, 'one veth on the bridge while it runs');
    t.ok(traces([webId]).rules.length > 0, 'its portmap and masquerade rules exist while it runs');

    t.equal((await api().post(`/containers/${webId}/stop?timeout=0`)).status, 200);
    // The teardown runs once the exit is seen, in the background: done when the container shows no address.
    await eventually(async () => {
      const answer = await api().get<ContainerBody>(`/containers/${webId}`);
      return answer.body.network?.networks[0]?.ipAddress === null ? true : undefined;
    }, 10_000);
    t.same(
      traces([webId, `${ip}/32`]),
      { veths: [], rules: [], allocations: [], pins: [] },
      'stopped: nothing left',
    );
    const listedStopped = await api().get<ContainerBody[]>('/containers');
    t.equal(
      listedStopped.body.find((each) => each.id === webId)?.network?.networks[0]?.ipAddress,
      null,
      'the list, served from its cache, follows the teardown',
    );
    const stopped = await api().get<ContainerBody>(`/containers/${webId}`);
    t.match(stopped.body.network!.networks[0], { ipAddress: null, macAddress: null });
    t.same(stopped.body.network!.ports, web.network!.ports, 'its published ports stay its own');

    const restarted = await api().post<ContainerBody>(`/containers/${webId}/restart`);
    t.equal(restarted.status, 200, JSON.stringify(restarted.body));
    const again = await api().get<ContainerBody>(`/containers/${webId}`);
    const newIp = again.body.network!.networks[0]!.ipAddress!;
    t.match(newIp, /^10\.87\.231\.\d+$/);
    const port = web.network!.ports[0]!.hostPort;
    t.equal(
      await fetchEventually(`http://127.0.0.1:${port}/`),
      'hello-from-cnit\n',
      'the restart published it again',
    );

    t.equal((await api().delete(`/containers/${webId}?force=true`)).status, 204);
    t.same(
      traces([webId, `${newIp}/32`]),
      { veths: [], rules: [], allocations: [], pins: [] },
      'deleted: nothing left',
    );
    t.same((await api().get(`/networks/${DEFAULT_NET.name}`)).body.containers, []);
    t.equal((await api().delete(`/networks/${DEFAULT_NET.name}`)).status, 204, 'unused: deleted');
    t.equal(traces([]).veths.length, 0);
    t.throws(
      () => execFileSync('ip', ['link', 'show', DEFAULT_NET.bridge], { stdio: 'ignore' }),
      'its bridge is gone',
    );
  });

  t.test('restart policy cycles: every run gets its network, the last exit leaves nothing', async (t) => {
    const id = sandbox.id('cycler');
    const answer = await api().post<ContainerBody>('/containers', {
      id,
      bundle: sandbox.bundle('cycler', ['sh', '-c', 'grep -q eth0 /proc/net/dev && echo has-eth0; exit 1']),
      start: true,
      networks: [DEFAULT_NET.name],
      restartPolicy: { name: 'on-failure', maxRetries: 2 },
    });
    t.equal(answer.status, 201, JSON.stringify(answer.body));
    // Done when the third run has printed and then stopped with its network gone (restartCount moves when a
    // restart begins, so it alone does not say the last run is over).
    const runs = async () =>
      (await daemon!.app.inject({ method: 'GET', url: `/containers/${id}/logs` })).body.match(/has-eth0/g)
        ?.length;
    await eventually(async () => {
      if ((await runs()) !== 3) return undefined;
      const current = await api().get<ContainerBody & { restartCount: number }>(`/containers/${id}`);
      return current.body.restartCount === 2 &&
        current.body.status === 'stopped' &&
        current.body.network?.networks[0]?.ipAddress === null
        ? true
        : undefined;
    }, 30_000);
    t.pass('the first run and both restarts had eth0');
    t.same(
      traces([id]),
      { veths: [], rules: [], allocations: [], pins: [] },
      'nothing left after the last exit',
    );
    t.equal((await api().delete(`/containers/${id}`)).status, 204);
  });

  t.test('close', async () => {
    await daemon!.close();
    daemon = undefined;
  });
});

t.test('a daemon SIGKILL leaves nothing once runcd is back', async (t) => {
  const process = new DaemonProcess(sandbox, defaultNetworkFlags(DEFAULT_NET));
  t.teardown(() => process.close());
  await process.start();
  const goneId = sandbox.id('gone');
  const keptId = sandbox.id('kept');
  const gone = await process.request<ContainerBody>('POST', '/containers', {
    id: goneId,
    bundle: webBundle('gone', 'gone\n'),
    start: true,
    networks: [DEFAULT_NET.name],
    ports: [{ containerPort: 8080 }],
  });
  t.equal(gone.status, 201, JSON.stringify(gone.body));
  const kept = await process.request<ContainerBody>('POST', '/containers', {
    id: keptId,
    bundle: webBundle('kept', 'kept\n'),
    start: true,
    networks: [DEFAULT_NET.name],
    ports: [{ containerPort: 8080 }],
  });
  t.equal(kept.status, 201, JSON.stringify(kept.body));
  const goneIp = gone.body.network!.networks[0]!.ipAddress!;
  await process.stop('SIGKILL');
  // While runcd is down, one container goes behind its back: only the cached results and the pin say what to undo.
  execFileSync(RUNTIME_BINARY, [`--root=${sandbox.runtimeRoot}`, 'delete', '--force', goneId]);
  t.equal(traces([goneId]).veths.length, 2, "the pin keeps the gone container's veth alive until DEL");

  await process.start();
  t.same(
    traces([goneId, `${goneIp}/32`]).rules,
    [],
    "reconcile ran DEL: the gone container's rules are gone",
  );
  t.equal(traces([]).veths.length, 1, 'only the running container keeps a veth');
  t.equal(traces([]).allocations.length, 1, 'only the running container keeps an address');
  const keptPort = kept.body.network!.ports[0]!.hostPort;
  t.equal(await fetchEventually(`http://127.0.0.1:${keptPort}/`), 'kept\n', 'the running one still answers');

  for (const id of [goneId, keptId]) {
    t.equal((await process.request('DELETE', `/containers/${id}?force=true`)).status, 204);
  }
  t.same(traces([goneId, keptId, `${goneIp}/32`]), { veths: [], rules: [], allocations: [], pins: [] });
  t.equal((await process.request('DELETE', `/networks/${DEFAULT_NET.name}`)).status, 204);
});
