import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { openDaemon, type Daemon, type DaemonConfig } from '../../src/daemon.js';
import { cleanUpNetworking, defaultNetworkFlags, dnsTraces, hostTraces } from '../helpers/network-host.js';
import { client, createSandbox, DaemonProcess, eventually, RUNTIME_BINARY } from '../helpers/sandbox.js';

// Names on user networks (issue 16): containers resolve each other by id and alias through runcd's aardvark-dns.
// Everything is this file's own (network names, bridges, subnets 10.87.241-242.0/24, the DNS server of its state
// dir). Every name asked ends up under runcd's search domain (dns.runcd), which aardvark answers or refuses
// itself and never forwards: no query leaves the machine. The teardown removes it all even when a test fails.
const sandbox = createSandbox('cnidns');
const DEFAULT_NET = { name: 'cnidns-default', subnet: '10.87.241.0/24', bridge: 'cnidns-br0' };
const USER_NET = { name: 'cnidns-user', subnet: '10.87.242.0/24', bridge: 'cnidns-br1' };
const config: DaemonConfig = { ...sandbox.config, network: { defaultNetwork: DEFAULT_NET } };
const OPERATOR_BRIDGE = 'cnidns-op0';
const silent = pino({ level: process.env.RUNCD_TEST_LOG ?? 'silent' });
let daemon: Daemon | undefined;
t.teardown(async () => {
  await daemon?.close();
  daemon = undefined;
  await cleanUpNetworking(sandbox, [DEFAULT_NET.bridge, USER_NET.bridge, OPERATOR_BRIDGE], config);
});

interface ContainerBody {
  id: string;
  network?: { networks: Array<{ network: string; ipAddress: string | null; aliases: string[] }> };
  code?: string;
  detail?: string;
}
interface ExecAnswer {
  exitCode: number;
  stdout: string;
  stderr: string;
}

type Exec = (id: string, args: string[]) => Promise<ExecAnswer>;

/** busybox nslookup of `name` inside container `from`: the addresses it printed (none for NXDOMAIN). */
async function lookup(exec: Exec, from: string, name: string): Promise<string[]> {
  const answer = await exec(from, ['nslookup', '-type=a', name]);
  return [...answer.stdout.matchAll(/^Address: (\d+\.\d+\.\d+\.\d+)$/gm)].map((match) => match[1]!);
}

const serverFile = () => join(sandbox.stateDir, 'aardvark-dns', USER_NET.name);

t.test('containers on a user network resolve each other by id and alias', async (t) => {
  daemon = await openDaemon(config, silent);
  const api = client(daemon);
  const exec: Exec = async (id, args) =>
    (await api.post<ExecAnswer>(`/containers/${id}/exec`, { args, timeoutSeconds: 20 })).body;
  t.equal((await api.post('/networks', USER_NET)).status, 201);

  const serverId = sandbox.id('srv');
  const clientId = sandbox.id('cli');
  const server = await api.post<ContainerBody>('/containers', {
    id: serverId,
    // busybox httpd serving /etc: any answer (a 404 too) shows the address is reached.
    bundle: sandbox.bundle('srv', ['httpd', '-f', '-p', '8080', '-h', '/etc']),
    start: true,
    networks: [USER_NET.name],
    aliases: ['cnidns-db', 'cnidns-primary'],
  });
  t.equal(server.status, 201, JSON.stringify(server.body));
  t.same(server.body.network!.networks[0]!.aliases, ['cnidns-db', 'cnidns-primary'], 'aliases are shown');
  const serverIp = server.body.network!.networks[0]!.ipAddress!;
  const peer = await api.post<ContainerBody>('/containers', {
    id: clientId,
    bundle: sandbox.bundle('cli'),
    start: true,
    networks: [USER_NET.name],
  });
  t.equal(peer.status, 201, JSON.stringify(peer.body));
  const clientIp = peer.body.network!.networks[0]!.ipAddress!;

  const resolv = await exec(clientId, ['cat', '/etc/resolv.conf']);
  t.match(resolv.stdout, /^search dns\.runcd( |$)/m, "runcd's search domain comes first");
  t.match(resolv.stdout, /^nameserver 10\.87\.242\.1$/m, "the network's gateway is the nameserver");
  t.notMatch(resolv.stdout, /^nameserver (?!10\.87\.242\.1$)/m, 'and the only one');

  t.same(await lookup(exec, clientId, serverId), [serverIp], 'by id');
  t.same(await lookup(exec, clientId, 'cnidns-db'), [serverIp], 'by alias');
  t.same(await lookup(exec, clientId, 'cnidns-primary'), [serverIp], 'by another alias');
  t.same(await lookup(exec, serverId, clientId), [clientIp], 'the other way round');
  t.same(await lookup(exec, clientId, 'cnidns-nobody'), [], 'an unknown name is NXDOMAIN');
  const reached = await exec(clientId, [
    'sh',
    '-c',
    // nc, not wget: busybox-static's wget crashes in glibc's static resolver, even for a numeric address.
    `ip=$(nslookup -type=a cnidns-db | sed -n 's/^Address: \\([0-9.]*\\)$/\\1/p'); printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "$ip" 8080 | head -c 5; echo " from $ip"`,
  ]);
  t.equal(reached.stdout.trim(), `HTTP/ from ${serverIp}`, 'the address its alias resolves to answers');

  const file = readFileSync(serverFile(), 'utf8');
  t.match(
    file,
    /^10\.87\.242\.1\n/,
    "aardvark's file: the gateway to listen on, then one line per container",
  );
  t.match(
    file,
    new RegExp(`^${serverId} ${serverIp.replace(/\./g, '\\.')}  ${serverId},cnidns-db,cnidns-primary$`, 'm'),
  );
  t.equal(dnsTraces(sandbox).servers.length, 1, 'one aardvark-dns serves the sandbox');

  // The default network has no names, as Docker's default bridge: the host's resolvers, no aliases.
  const plain = sandbox.id('plain');
  const onDefault = await api.post<ContainerBody>('/containers', {
    id: plain,
    bundle: sandbox.bundle('plain'),
    start: true,
    networks: [DEFAULT_NET.name],
  });
  t.equal(onDefault.status, 201, JSON.stringify(onDefault.body));
  t.same(onDefault.body.network!.networks[0]!.aliases, []);
  const plainResolv = await exec(plain, ['cat', '/etc/resolv.conf']);
  t.notMatch(
    plainResolv.stdout,
    /dns\.runcd|nameserver 10\.87\.241\.1/,
    'no runcd nameserver on the default network',
  );
  const refused = await api.post<ContainerBody>('/containers', {
    id: sandbox.id('refused'),
    bundle: sandbox.bundle('refused'),
    networks: [DEFAULT_NET.name],
    aliases: ['cnidns-x'],
  });
  t.match(refused, {
    status: 400,
    body: { code: 'network_aliases_unsupported', detail: /aliases need a user network/ },
  });
  const badAlias = await api.post<ContainerBody>('/containers', {
    id: sandbox.id('refused'),
    bundle: sandbox.bundle('refused'),
    networks: [USER_NET.name],
    aliases: ['two words'],
  });
  t.match(badAlias, { status: 400, body: { code: 'invalid_body', detail: /alias must be/ } });
  t.equal((await api.get(`/containers/${sandbox.id('refused')}`)).status, 404, 'nothing was created');

  // A stopped container's names go before its address is released.
  t.equal((await api.post(`/containers/${serverId}/stop?timeout=0`)).status, 200);
  await eventually(
    async () => ((await lookup(exec, clientId, 'cnidns-db')).length === 0 ? true : undefined),
    10_000,
  );
  t.notMatch(readFileSync(serverFile(), 'utf8'), new RegExp(serverId), 'its line is gone');
  t.equal((await api.post(`/containers/${serverId}/restart`)).status, 200, 'started again');
  const again = await api.get<ContainerBody>(`/containers/${serverId}`);
  t.same(
    await lookup(exec, clientId, 'cnidns-db'),
    [again.body.network!.networks[0]!.ipAddress],
    'its names are back with its new address',
  );

  for (const id of [serverId, clientId, plain])
    t.equal((await api.delete(`/containers/${id}?force=true`)).status, 204);
  t.same(
    dnsTraces(sandbox),
    { servers: [], files: [] },
    'no container on a user network: no DNS server, no files',
  );
  t.equal((await api.delete(`/networks/${USER_NET.name}`)).status, 204);
  t.same(dnsTraces(sandbox), { servers: [], files: [] });
  await daemon.close();
  daemon = undefined;
});

t.test(
  'a SIGKILLed runcd (and its DNS server killed too) leaves nothing the next start cannot clean',
  async (t) => {
    const process = new DaemonProcess(sandbox, defaultNetworkFlags(DEFAULT_NET));
    t.teardown(() => process.close());
    await process.start();
    const exec: Exec = async (id, args) =>
      (await process.request<ExecAnswer>('POST', `/containers/${id}/exec`, { args, timeoutSeconds: 20 }))
        .body;
    t.equal((await process.request('POST', '/networks', USER_NET)).status, 201);
    const goneId = sandbox.id('gone');
    const keptId = sandbox.id('kept');
    for (const [id, alias] of [
      [goneId, 'cnidns-gone'],
      [keptId, 'cnidns-kept'],
    ] as const) {
      const created = await process.request('POST', '/containers', {
        id,
        bundle: sandbox.bundle(id),
        start: true,
        networks: [USER_NET.name],
        aliases: [alias],
      });
      t.equal(created.status, 201, JSON.stringify(created.body));
    }
    const [firstServer] = dnsTraces(sandbox).servers;
    t.ok(firstServer, 'a DNS server runs');

    await process.stop('SIGKILL');
    t.same(dnsTraces(sandbox).servers, [firstServer], 'the DNS server outlives runcd, like conmon');
    execFileSync(RUNTIME_BINARY, [`--root=${sandbox.runtimeRoot}`, 'delete', '--force', goneId]);
    await process.start();
    t.same(dnsTraces(sandbox).servers, [firstServer], 'the next runcd adopts it, starting no second one');
    t.notMatch(
      readFileSync(serverFile(), 'utf8'),
      new RegExp(goneId),
      'the gone container was dropped from its file',
    );
    t.same(await lookup(exec, keptId, 'cnidns-gone'), [], 'and no longer resolves');
    t.equal((await lookup(exec, keptId, 'cnidns-kept')).length, 1, 'the running one still does');

    await process.stop('SIGKILL');
    execFileSync('kill', ['-KILL', String(firstServer)]);
    await eventually(async () => (dnsTraces(sandbox).servers.length === 0 ? true : undefined));
    await process.start();
    const [secondServer] = dnsTraces(sandbox).servers;
    t.ok(
      secondServer !== undefined && secondServer !== firstServer,
      'a server that died meanwhile is started again',
    );
    t.equal((await lookup(exec, keptId, 'cnidns-kept')).length, 1, 'and answers');

    for (const id of [goneId, keptId])
      t.equal((await process.request('DELETE', `/containers/${id}?force=true`)).status, 204);
    t.same(dnsTraces(sandbox), { servers: [], files: [] }, 'nothing left of the DNS server');
    t.same(hostTraces(sandbox, USER_NET.bridge, USER_NET.name, [goneId, keptId]), {
      veths: [],
      rules: [],
      allocations: [],
      pins: [],
    });
    t.equal((await process.request('DELETE', `/networks/${USER_NET.name}`)).status, 204);
    await process.stop('SIGTERM');
    t.same(
      dnsTraces(sandbox),
      { servers: [], files: [] },
      'a stopped runcd with no containers leaves no DNS server',
    );
  },
);

t.test("an operator's conflist directory: its networks are usable by name", async (t) => {
  const dir = join(sandbox.dir, 'operator-net.d');
  const ipam = join(sandbox.dir, 'operator-ipam');
  mkdirSync(dir);
  writeFileSync(join(dir, 'broken.conflist'), '{');
  writeFileSync(
    join(dir, 'op.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'cnidns-op',
      plugins: [
        {
          type: 'bridge',
          bridge: OPERATOR_BRIDGE,
          isGateway: true,
          ipam: { type: 'host-local', dataDir: ipam, ranges: [[{ subnet: '10.87.245.0/24' }]] },
        },
      ],
    }),
  );
  daemon = await openDaemon({ ...config, network: { ...config.network, operatorConfigDir: dir } }, silent);
  const api = client(daemon);
  const id = sandbox.id('op');
  const created = await api.post<ContainerBody>('/containers', {
    id,
    bundle: sandbox.bundle('op'),
    start: true,
    networks: ['cnidns-op'],
  });
  t.equal(created.status, 201, JSON.stringify(created.body));
  t.match(created.body.network!.networks[0], {
    network: 'cnidns-op',
    ipAddress: /^10\.87\.245\.\d+$/,
    aliases: [],
  });
  const devices = await api.post<ExecAnswer>(`/containers/${id}/exec`, { args: ['cat', '/proc/net/dev'] });
  t.match(devices.body.stdout, /eth0:/, 'the operator network gave it an interface');
  t.same(
    readdirSync(join(ipam, 'cnidns-op')).filter((name) => /^\d/.test(name)).length,
    1,
    'an address of its IPAM',
  );
  t.notOk(
    (await api.get<Array<{ name: string }>>('/networks')).body.some(
      (network) => network.name === 'cnidns-op',
    ),
    "not one of runcd's networks: not listed, not deletable through runcd",
  );
  t.match(
    await api.post('/containers', {
      id: sandbox.id('nowhere'),
      bundle: sandbox.bundle('nowhere'),
      networks: ['cnidns-nowhere'],
    }),
    {
      status: 404,
      body: { code: 'network_not_found' },
    },
  );
  t.equal((await api.delete(`/containers/${id}?force=true`)).status, 204);
  t.same(
    readdirSync(join(ipam, 'cnidns-op')).filter((name) => /^\d/.test(name)),
    [],
    'its address was released',
  );
  t.same(hostTraces(sandbox, OPERATOR_BRIDGE, 'cnidns-op', [id]).veths, [], 'and its veth removed');
  t.ok(existsSync(join(dir, 'op.conflist')), "the operator's file is left as it was");
  await daemon.close();
  daemon = undefined;
});
