import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { DaemonConfig } from '../../src/daemon.js';
import { dockerCli } from '../helpers/docker-cli.js';
import { cleanUpNetworking, defaultNetworkFlags, hostTraces } from '../helpers/network-host.js';
import { makeBusyboxRootfs, tarball } from '../helpers/rootfs.js';
import { createSandbox, DaemonProcess, eventually } from '../helpers/sandbox.js';

// The docker CLI on runcd's networks: docker network create/ls/inspect/rm, docker run --network and -p, docker
// port, inspect's NetworkSettings and the Ports column of docker ps. Own names, bridges and subnets
// (10.87.236-237.0/24); traffic only to 127.0.0.1 and to these bridges; everything removed at teardown.
const sandbox = createSandbox('cnidk');
const DEFAULT_NET = { name: 'cnidk-default', subnet: '10.87.236.0/24', bridge: 'cnidk-br0' };
const USER_NET = { name: 'cnidk-user', subnet: '10.87.237.0/24' };
const config: DaemonConfig = { ...sandbox.config, network: { defaultNetwork: DEFAULT_NET } };
const dockerSocket = join(sandbox.dir, 'docker.sock');
const daemon = new DaemonProcess(sandbox, [
  '--docker-socket',
  dockerSocket,
  ...defaultNetworkFlags(DEFAULT_NET),
]);
let userBridge = '';
t.teardown(async () => {
  await daemon.close();
  await cleanUpNetworking(sandbox, [DEFAULT_NET.bridge, ...(userBridge ? [userBridge] : [])], config);
});
const docker = (...args: string[]) => dockerCli(dockerSocket, ...args);

async function fetchEventually(url: string): Promise<string> {
  return eventually(
    () =>
      fetch(url, { signal: AbortSignal.timeout(5_000) })
        .then((response) => response.text())
        .catch(() => undefined),
    10_000,
  );
}

t.test('docker network and docker run -p on runcd networks', async (t) => {
  await daemon.start();
  const rootfs = makeBusyboxRootfs(sandbox.dir);
  mkdirSync(join(rootfs, 'www'));
  writeFileSync(join(rootfs, 'www', 'index.html'), 'hello-from-docker-net\n');
  const archive = join(sandbox.dir, 'web.tar');
  writeFileSync(archive, tarball(rootfs));
  t.equal((await docker('import', archive, 'cnidk-web')).code, 0);

  const created = await docker('network', 'create', '--subnet', USER_NET.subnet, USER_NET.name);
  t.equal(created.code, 0, created.stderr);
  t.match(created.stdout.trim(), /^[0-9a-f]{64}$/);
  const listed = await docker('network', 'ls', '--format', '{{.Name}} {{.Driver}}');
  t.match(listed.stdout, new RegExp(`^${USER_NET.name} bridge$`, 'm'));
  const subnet = await docker('network', 'inspect', '-f', '{{(index .IPAM.Config 0).Subnet}}', USER_NET.name);
  t.equal(subnet.stdout.trim(), USER_NET.subnet);
  userBridge = (await daemon.request<{ bridge: string }>('GET', `/networks/${USER_NET.name}`)).body.bridge;
  t.match(userBridge, /^rcd-[0-9a-f]{10}$/);
  t.equal(
    (await docker('network', 'inspect', '-f', '{{json .Options}}', USER_NET.name)).stdout.trim(),
    '{}',
    "no driver options listed that the network's creator did not give (docker-compose compares them)",
  );
  const again = await docker('network', 'create', USER_NET.name);
  t.not(again.code, 0);
  t.match(again.stderr, /already exists/);

  const web = sandbox.id('web');
  const httpd = ['httpd', '-f', '-p', '8080', '-h', '/www'];
  const run = await docker(
    'run',
    '-d',
    '--name',
    web,
    '--network',
    USER_NET.name,
    '-p',
    '127.0.0.1::8080',
    'cnidk-web',
    ...httpd,
  );
  t.equal(run.code, 0, run.stderr);
  const port = await docker('port', web);
  t.equal(port.code, 0, port.stderr);
  const hostPort = /^8080\/tcp -> 127\.0\.0\.1:(\d+)$/m.exec(port.stdout)?.[1];
  t.ok(hostPort, `docker port: ${port.stdout}`);
  t.equal(await fetchEventually(`http://127.0.0.1:${hostPort}/`), 'hello-from-docker-net\n');
  const ip = (
    await docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${USER_NET.name}").IPAddress}}`, web)
  ).stdout.trim();
  t.match(ip, /^10\.87\.237\.\d+$/);
  t.equal(await fetchEventually(`http://${ip}:8080/`), 'hello-from-docker-net\n', 'via its own address');
  const mode = await docker(
    'inspect',
    '-f',
    '{{.HostConfig.NetworkMode}} {{.NetworkSettings.IPAddress}}',
    web,
  );
  t.equal(mode.stdout.trim(), `${USER_NET.name} ${ip}`);
  const ps = await docker('ps', '--format', '{{.Names}} {{.Ports}}');
  t.match(ps.stdout, new RegExp(`^${web} 127\\.0\\.0\\.1:${hostPort}->8080/tcp$`, 'm'));
  const members = await docker(
    'network',
    'inspect',
    '-f',
    '{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}',
    USER_NET.name,
  );
  t.equal(members.stdout.trim(), `${web} ${ip}/24`);

  // -p without a network: the default bridge network, on 127.0.0.1 since no host address was given.
  const web2 = sandbox.id('web2');
  const run2 = await docker('run', '-d', '--name', web2, '-p', '8080', 'cnidk-web', ...httpd);
  t.equal(run2.code, 0, run2.stderr);
  const port2 = /127\.0\.0\.1:(\d+)$/m.exec((await docker('port', web2, '8080/tcp')).stdout)?.[1];
  t.ok(port2, 'published on 127.0.0.1');
  t.equal(await fetchEventually(`http://127.0.0.1:${port2}/`), 'hello-from-docker-net\n');
  t.equal(
    (await docker('inspect', '-f', '{{.HostConfig.NetworkMode}}', web2)).stdout.trim(),
    DEFAULT_NET.name,
  );

  const taken = await docker(
    'run',
    '-d',
    '--name',
    sandbox.id('web3'),
    '-p',
    `127.0.0.1:${hostPort}:8080`,
    'cnidk-web',
    ...httpd,
  );
  t.not(taken.code, 0);
  t.match(
    taken.stderr,
    new RegExp(`host port 127\\.0\\.0\\.1:${hostPort}/tcp is published by container "${web}"`),
  );
  const unknown = await docker('run', '-d', '--network', 'cnidk-nowhere', 'cnidk-web', ...httpd);
  t.not(unknown.code, 0);
  t.match(unknown.stderr, /network "cnidk-nowhere" does not exist/);
  const none = await docker('run', '--rm', '--network', 'none', 'cnidk-web', 'cat', '/proc/net/dev');
  t.equal(none.code, 0, none.stderr);
  t.notMatch(none.stdout, /eth0/, '--network none: loopback only');

  const inUse = await docker('network', 'rm', USER_NET.name);
  t.not(inUse.code, 0);
  t.match(inUse.stderr, /is used by container/);
  // connect / disconnect of a running container: CNI ADD / DEL into its pinned namespace.
  const connect = await docker('network', 'connect', '--alias', 'cnidk-second', USER_NET.name, web2);
  t.equal(connect.code, 0, connect.stderr);
  const joined = await docker(
    'inspect',
    '-f',
    `{{(index .NetworkSettings.Networks "${USER_NET.name}").IPAddress}} {{json (index .NetworkSettings.Networks "${USER_NET.name}").Aliases}}`,
    web2,
  );
  const [web2Ip, web2Aliases] = joined.stdout.trim().split(' ');
  t.match(web2Ip, /^10\.87\.237\.\d+$/, 'an address on the network it joined');
  t.match(web2Aliases, /"cnidk-second"/);
  const devices = await docker('exec', web2, 'cat', '/proc/net/dev');
  t.match(devices.stdout, /eth1:/, 'a second interface appeared in the running container');
  t.equal(await fetchEventually(`http://${web2Ip}:8080/`), 'hello-from-docker-net\n', 'reached on it');
  const resolved = await docker('exec', web, 'nslookup', '-type=a', 'cnidk-second');
  t.match(
    resolved.stdout,
    new RegExp(`^Address: ${web2Ip!.replace(/\./g, '\\.')}$`, 'm'),
    'its alias resolves',
  );
  const twice = await docker('network', 'connect', USER_NET.name, web2);
  t.not(twice.code, 0);
  t.match(twice.stderr, /is on network "cnidk-user" already/);
  const portsNet = await docker('network', 'disconnect', DEFAULT_NET.name, web2);
  t.not(portsNet.code, 0);
  t.match(portsNet.stderr, /published ports .* go through network "cnidk-default"/);
  const disconnect = await docker('network', 'disconnect', USER_NET.name, web2);
  t.equal(disconnect.code, 0, disconnect.stderr);
  t.notMatch((await docker('exec', web2, 'cat', '/proc/net/dev')).stdout, /eth1:/, 'the interface is gone');
  t.same(
    hostTraces(sandbox, userBridge, USER_NET.name, [web2]).rules.filter((rule) =>
      rule.includes(USER_NET.name),
    ),
    [],
    'and its rules on that network (those of the default network stay)',
  );
  const again2 = await docker('network', 'disconnect', USER_NET.name, web2);
  t.not(again2.code, 0);
  t.match(again2.stderr, /is not on network "cnidk-user"/);
  const noneConnect = await docker(
    'create',
    '--name',
    sandbox.id('nonet'),
    '--network',
    'none',
    'cnidk-web',
    'true',
  );
  t.equal(noneConnect.code, 0, noneConnect.stderr);
  const refusedNone = await docker('network', 'connect', USER_NET.name, sandbox.id('nonet'));
  t.not(refusedNone.code, 0);
  t.match(refusedNone.stderr, /has network none/);
  t.equal((await docker('rm', sandbox.id('nonet'))).code, 0);

  t.equal((await docker('rm', '-f', web, web2)).code, 0);
  t.same(hostTraces(sandbox, userBridge, USER_NET.name, [web, `${ip}/32`]), {
    veths: [],
    rules: [],
    allocations: [],
    pins: [],
  });
  const removed = await docker('network', 'rm', USER_NET.name);
  t.equal(removed.code, 0, removed.stderr);
  t.notMatch((await docker('network', 'ls', '--format', '{{.Name}}')).stdout, new RegExp(USER_NET.name));
});
