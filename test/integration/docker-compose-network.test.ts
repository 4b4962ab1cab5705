import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import type { DaemonConfig } from '../../src/daemon.js';
import { dockerCli } from '../helpers/docker-cli.js';
import { buildOciLayout, dockerArchiveOf } from '../helpers/image-archive.js';
import { cleanUpNetworking, defaultNetworkFlags, dnsTraces, hostTraces } from '../helpers/network-host.js';
import { makeBusyboxRootfs } from '../helpers/rootfs.js';
import { createSandbox, DaemonProcess, eventually } from '../helpers/sandbox.js';

// Published port ranges (Docker's -p syntax and the native `range`) and Debian's docker-compose 1.29 bringing up
// two services on a compose network, one reaching the other by service name. Own names, bridges and subnets
// (10.87.243-244.0/24); traffic only to 127.0.0.1 and to these bridges; names only under runcd's own search
// domain (answered by its aardvark-dns, never forwarded). Everything is removed at teardown, even on failure.
const sandbox = createSandbox('cnicmp');
const DEFAULT_NET = { name: 'cnicmp-default', subnet: '10.87.243.0/24', bridge: 'cnicmp-br0' };
const COMPOSE_SUBNET = '10.87.244.0/24';
const config: DaemonConfig = { ...sandbox.config, network: { defaultNetwork: DEFAULT_NET } };
const dockerSocket = join(sandbox.dir, 'docker.sock');
const daemon = new DaemonProcess(sandbox, [
  '--docker-socket',
  dockerSocket,
  ...defaultNetworkFlags(DEFAULT_NET),
]);
const bridges: string[] = [DEFAULT_NET.bridge];
const project = join(sandbox.dir, 'project');

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function compose(...args: string[]): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(
      'docker-compose',
      ['-p', 'cnicmp', '--ansi', 'never', ...args],
      { env: { ...process.env, DOCKER_HOST: `unix://${dockerSocket}` }, timeout: 180_000, cwd: project },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

t.teardown(async () => {
  await compose('down', '--timeout', '0');
  await daemon.close();
  await cleanUpNetworking(sandbox, bridges, config);
});
const docker = (...args: string[]) => dockerCli(dockerSocket, ...args);

/** `count` consecutive TCP ports free on 127.0.0.1 now; the first of them. */
async function freePorts(count: number): Promise<number> {
  const bind = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = 20_000 + Math.floor(Math.random() * 40_000);
    let free = true;
    for (let port = first; port < first + count && free; port++) free = await bind(port);
    if (free) return first;
  }
  throw new Error('no free ports');
}

async function fetchEventually(url: string): Promise<string> {
  return eventually(
    () =>
      fetch(url, { signal: AbortSignal.timeout(5_000) })
        .then((response) => response.text())
        .catch(() => undefined),
    15_000,
  );
}

/** Two busybox httpds serving /www: 8080 (in the foreground, logging requests) and 8081. */
const TWO_HTTPDS = 'httpd -p 8081 -h /www && exec httpd -f -v -p 8080 -h /www';

t.test('setup: a busybox image from docker load', async (t) => {
  await daemon.start();
  const rootfs = makeBusyboxRootfs(sandbox.dir);
  mkdirSync(join(rootfs, 'www'));
  writeFileSync(join(rootfs, 'www', 'index.html'), 'hello-from-cnicmp\n');
  const layout = buildOciLayout(join(sandbox.dir, 'image'), rootfs, { cmd: ['sh'] });
  const archive = dockerArchiveOf(layout, join(sandbox.dir, 'bb.tar'), 'cnicmp-bb:latest');
  const loaded = await docker('load', '-i', archive);
  t.equal(loaded.code, 0, loaded.stderr);
});

t.test('published port ranges: docker run -p A-B:C-D, -p A-B:C, and the native range', async (t) => {
  const first = await freePorts(4);
  const web = sandbox.id('range');
  const run = await docker(
    'run',
    '-d',
    '--name',
    web,
    '-p',
    `127.0.0.1:${first}-${first + 1}:8080-8081`,
    '-p',
    `127.0.0.1:${first + 2}-${first + 3}:9090`,
    'cnicmp-bb',
    'sh',
    '-c',
    TWO_HTTPDS,
  );
  t.equal(run.code, 0, run.stderr);
  const ports = (await docker('port', web)).stdout.split('\n').filter(Boolean).sort();
  t.same(ports, [
    `8080/tcp -> 127.0.0.1:${first}`,
    `8081/tcp -> 127.0.0.1:${first + 1}`,
    `9090/tcp -> 127.0.0.1:${first + 2}`,
  ]);
  t.equal(await fetchEventually(`http://127.0.0.1:${first}/`), 'hello-from-cnicmp\n', 'first of the range');
  t.equal(
    await fetchEventually(`http://127.0.0.1:${first + 1}/`),
    'hello-from-cnicmp\n',
    'second of the range',
  );

  const taken = await docker(
    'run',
    '-d',
    '--name',
    sandbox.id('range2'),
    '-p',
    `127.0.0.1:${first + 1}-${first + 2}:80`,
    'cnicmp-bb',
    'sleep',
    '1000',
  );
  t.not(taken.code, 0);
  t.match(taken.stderr, new RegExp(`no host port of 127\\.0\\.0\\.1:${first + 1}-${first + 2}/tcp is free`));

  const bundle = sandbox.bundle('native', ['sh', '-c', TWO_HTTPDS]);
  mkdirSync(join(bundle, 'rootfs', 'www'), { recursive: true });
  writeFileSync(join(bundle, 'rootfs', 'www', 'index.html'), 'hello-native\n');
  const native = await daemon.request<{ network: { ports: unknown[] }; code?: string; detail?: string }>(
    'POST',
    '/containers',
    {
      id: sandbox.id('native'),
      bundle,
      start: true,
      networks: [DEFAULT_NET.name],
      ports: [{ containerPort: 8080, range: 2 }],
    },
  );
  t.equal(native.status, 201, JSON.stringify(native.body));
  const nativePorts = native.body.network.ports as Array<{ hostPort: number; containerPort: number }>;
  t.same(
    nativePorts.map((port) => port.containerPort),
    [8080, 8081],
    'a range without host ports: an ephemeral host port each',
  );
  for (const port of nativePorts) {
    t.equal(await fetchEventually(`http://127.0.0.1:${port.hostPort}/`), 'hello-native\n');
  }
  const refusals: Array<[unknown, RegExp]> = [
    [{ containerPort: 65535, range: 2 }, /the range goes past port 65535/],
    [{ containerPort: 80, hostPortEnd: 90 }, /hostPortEnd \d+ needs a hostPort/],
    [{ containerPort: 80, hostPort: 90, hostPortEnd: 80 }, /hostPortEnd \d+ needs a hostPort/],
    [{ containerPort: 80, hostPort: 90, hostPortEnd: 95, range: 2 }, /not both/],
  ];
  for (const [port, detail] of refusals) {
    const answer = await daemon.request('POST', '/containers', {
      id: sandbox.id('refused'),
      bundle: sandbox.bundle('refused'),
      networks: [DEFAULT_NET.name],
      ports: [port],
    });
    t.match(answer, { status: 400, body: { code: 'invalid_port_mapping', detail } }, JSON.stringify(port));
  }
  const many = await daemon.request('POST', '/containers', {
    id: sandbox.id('refused'),
    bundle: sandbox.bundle('refused'),
    networks: [DEFAULT_NET.name],
    ports: [
      { containerPort: 1000, range: 1000 },
      { containerPort: 3000, range: 100 },
    ],
  });
  t.match(many, { status: 400, body: { code: 'invalid_port_mapping', detail: /at most 1024/ } });
  t.equal((await daemon.request('GET', `/containers/${sandbox.id('refused')}`)).status, 404);

  t.equal((await docker('rm', '-f', web, sandbox.id('native'))).code, 0);
  t.same(hostTraces(sandbox, DEFAULT_NET.bridge, DEFAULT_NET.name, [web, sandbox.id('native')]).rules, []);
});

const COMPOSE_FILE = `version: "3"
services:
  web:
    image: cnicmp-bb
    command: sh -c '${TWO_HTTPDS}'
    ports:
      - "127.0.0.1:PORTS:8080-8081"
  client:
    image: cnicmp-bb
    command: sh -c 'echo client-up; exec sleep 1000'
networks:
  default:
    ipam:
      config:
        - subnet: ${COMPOSE_SUBNET}
`;

t.test(
  'docker-compose: two services on a compose network, one reaching the other by service name',
  async (t) => {
    const first = await freePorts(2);
    mkdirSync(project);
    writeFileSync(
      join(project, 'docker-compose.yml'),
      COMPOSE_FILE.replace('PORTS', `${first}-${first + 1}`),
    );
    const up = await compose('up', '-d');
    t.equal(up.code, 0, up.stderr);
    const network = await daemon.request<{ bridge: string; subnet: string }>(
      'GET',
      '/networks/cnicmp_default',
    );
    t.equal(network.status, 200, 'compose made its network');
    t.equal(network.body.subnet, COMPOSE_SUBNET);
    bridges.push(network.body.bridge);

    const ps = await compose('ps');
    t.equal(ps.code, 0, ps.stderr);
    t.match(ps.stdout, /cnicmp_client_1\s.*\sUp/);
    t.match(
      ps.stdout,
      new RegExp(
        `cnicmp_web_1\\s.*Up\\s+127\\.0\\.0\\.1:${first}->8080/tcp,\\s*127\\.0\\.0\\.1:${first + 1}->8081/tcp`,
      ),
    );
    t.equal(
      await fetchEventually(`http://127.0.0.1:${first + 1}/`),
      'hello-from-cnicmp\n',
      'a published port of the range',
    );

    const fetched = await eventually(async () => {
      // docker exec, not compose exec: compose 1.29 runs `docker exec --interactive`, and runcd's Docker API
      // has no stdin.
      const answer = await docker(
        'exec',
        'cnicmp_client_1',
        'sh',
        '-c',
        // nc, not wget: busybox-static's wget crashes in glibc's static resolver, even for a numeric address.
        "ip=$(nslookup -type=a web | sed -n 's/^Address: \\([0-9.]*\\)$/\\1/p'); printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 \"$ip\" 8080",
      );
      return answer.code === 0 && answer.stdout.includes('200 OK')
        ? answer.stdout.split('\r\n\r\n')[1]
        : undefined;
    }, 20_000);
    t.equal(fetched, 'hello-from-cnicmp\n', 'client reached web by its service name');
    const aliases = await docker(
      'inspect',
      '-f',
      '{{json (index .NetworkSettings.Networks "cnicmp_default").Aliases}}',
      'cnicmp_web_1',
    );
    t.match(aliases.stdout, /"web"/, 'the service name is an alias of its container');

    const logs = await compose('logs', '--no-color');
    t.equal(logs.code, 0, logs.stderr);
    t.match(logs.stdout, /client_1\s+\| client-up/);
    t.match(
      logs.stdout,
      /web_1\s+\| \[::ffff:10\.87\.244\.\d+\]:\d+: response:200/,
      "web's httpd logged the client's request",
    );

    const down = await compose('down', '--timeout', '1');
    t.equal(down.code, 0, down.stderr);
    t.equal((await docker('ps', '-aq')).stdout.trim(), '', 'down removes the containers');
    t.notMatch(
      (await docker('network', 'ls', '--format', '{{.Name}}')).stdout,
      /cnicmp_default/,
      'and the network',
    );
    t.same(hostTraces(sandbox, network.body.bridge, 'cnicmp_default', ['cnicmp']), {
      veths: [],
      rules: [],
      allocations: [],
      pins: [],
    });
    t.same(dnsTraces(sandbox), { servers: [], files: [] }, 'and the DNS server and its files');
  },
);
