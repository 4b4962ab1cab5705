import t from 'tap';
import { parseCommandLine } from '../../src/config.js';
import { conflistFor } from '../../src/network/network-conflist.js';
import { contains, firstHost, overlaps, parseSubnet, subnetOfInterface } from '../../src/network/subnets.js';

t.test('subnets: only IPv4 networks with their host bits zero, /8 to /29', async (t) => {
  t.match(parseSubnet('10.87.5.0/24'), { prefix: 24, cidr: '10.87.5.0/24' });
  for (const bad of [
    '10.87.5.1/24',
    '10.87.5.0',
    '10.87.5.0/30',
    '10.0.0.0/7',
    '::1/128',
    '300.1.1.0/24',
    'x',
  ]) {
    t.equal(parseSubnet(bad), undefined, bad);
  }
  const a = parseSubnet('10.87.0.0/16')!;
  t.ok(overlaps(a, parseSubnet('10.87.200.0/24')!), 'a /24 inside a /16');
  t.ok(overlaps(parseSubnet('10.87.200.0/24')!, a), 'and the other way round');
  t.notOk(overlaps(parseSubnet('10.87.1.0/24')!, parseSubnet('10.87.2.0/24')!), 'neighbours');
  t.ok(contains(parseSubnet('10.87.1.0/24')!, '10.87.1.255'));
  t.notOk(contains(parseSubnet('10.87.1.0/24')!, '10.87.2.0'));
  t.equal(firstHost(parseSubnet('10.87.1.0/24')!), '10.87.1.1');
  t.equal(subnetOfInterface('192.168.7.9', '255.255.255.0')?.cidr, '192.168.7.0/24');
  t.equal(subnetOfInterface('127.0.0.1', '255.0.0.0')?.cidr, '127.0.0.0/8');
});

t.test(
  'the conflist: bridge with host-local in runcd’s own IPAM dir, portmap, firewall, no loopback',
  async (t) => {
    const conflist = conflistFor(
      {
        name: 'n1',
        bridge: 'br-n1',
        subnet: '10.87.9.0/24',
        gateway: '10.87.9.1',
        created: '',
        labels: {},
        isDefault: false,
      },
      '/state/cni/ipam',
    );
    t.match(conflist, {
      cniVersion: '1.0.0',
      name: 'n1',
      plugins: [
        {
          type: 'bridge',
          bridge: 'br-n1',
          isGateway: true,
          ipMasq: true,
          ipam: {
            type: 'host-local',
            dataDir: '/state/cni/ipam',
            ranges: [[{ subnet: '10.87.9.0/24', gateway: '10.87.9.1' }]],
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
        { type: 'firewall' },
      ],
    });
    t.equal(conflist.plugins.length, 3);
  },
);

t.test('network flags: defaults and refusals', async (t) => {
  const run = (argv: string[]) => {
    const parsed = parseCommandLine(['--socket', '/tmp/x.sock', ...argv], {});
    if (parsed.kind !== 'run') throw new Error('not a run');
    return parsed.config.network;
  };
  t.same(run([]), {
    pluginDirs: ['/usr/lib/cni'],
    defaultNetwork: { name: 'runcd', subnet: '10.87.0.0/24', bridge: 'runcd0' },
    publishHostIp: '127.0.0.1',
    aardvarkBinary: '/usr/lib/podman/aardvark-dns',
  });
  t.equal(run(['--aardvark-dns', 'none']).aardvarkBinary, 'none', 'name resolution can be turned off');
  t.equal(run(['--cni-config-dir', '/etc/cni/net.d']).operatorConfigDir, '/etc/cni/net.d');
  t.throws(() => run(['--cni-config-dir', 'net.d']), /--cni-config-dir must be an absolute path/);
  t.match(
    run([
      '--default-network',
      'web',
      '--default-network-subnet',
      '10.87.40.0/24',
      '--publish-host-ip',
      '0.0.0.0',
    ]),
    {
      defaultNetwork: { name: 'web', subnet: '10.87.40.0/24' },
      publishHostIp: '0.0.0.0',
    },
  );
  t.throws(() => run(['--default-network', 'none']), /not none or host/);
  t.throws(() => run(['--default-network-subnet', '10.87.40.1/24']), /host bits zero/);
  t.throws(() => run(['--default-network-bridge', 'much-too-long-bridge']), /1-15 characters/);
  t.throws(() => run(['--publish-host-ip', 'localhost']), /IPv4 address/);
  t.throws(() => run(['--cni-plugin-dir', 'relative']), /absolute path/);
  t.throws(() => run(['--aardvark-dns', 'aardvark-dns']), /--aardvark-dns must be an absolute path/);
});
