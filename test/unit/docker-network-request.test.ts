import t from 'tap';
import { networkRequestOf } from '../../src/docker/translate/networks.js';

// Docker's create body (NetworkMode, PortBindings, NetworkingConfig) → the native create's networks, ports and
// aliases: ranges as the docker CLI and docker-py send them, aliases as docker run and docker-compose send them.

t.test(
  'a host port range for one container port is the first free one of it (-p 8080-8085:80)',
  async (t) => {
    t.same(networkRequestOf('web', { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '8080-8085' }] }, 'runcd'), {
      networks: ['web'],
      ports: [{ containerPort: 80, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: 8080, hostPortEnd: 8085 }],
      aliases: [],
    });
    t.same(
      networkRequestOf('default', { '80/udp': [{ HostPort: '9000-9000' }] }, 'runcd'),
      { networks: ['runcd'], ports: [{ containerPort: 80, protocol: 'udp', hostPort: 9000 }] },
      'a range of one port is that port',
    );
    t.same(
      networkRequestOf(
        '',
        { '8080/tcp': [{ HostPort: '18080' }], '8081/tcp': [{ HostPort: '18081' }] },
        'runcd',
      ),
      {
        networks: ['runcd'],
        ports: [
          { containerPort: 8080, protocol: 'tcp', hostPort: 18080 },
          { containerPort: 8081, protocol: 'tcp', hostPort: 18081 },
        ],
      },
      '-p 18080-18081:8080-8081 arrives split by the CLI',
    );
    for (const hostPort of ['80-', 'a-b', '1-2-3', ' 80']) {
      t.throws(() => networkRequestOf('web', { '80/tcp': [{ HostPort: hostPort }] }, 'runcd'), {
        status: 400,
        message: `invalid host port "${hostPort}" for 80/tcp`,
      });
    }
  },
);

t.test(
  "aliases: the endpoints', its short id and hostname on a user network; refused on the default one",
  async (t) => {
    t.same(
      networkRequestOf(
        'proj_default',
        undefined,
        'runcd',
        { proj_default: { Aliases: ['web', 'www'], IPAMConfig: {} } },
        '0123456789ab',
        'web-host',
      ),
      { networks: ['proj_default'], aliases: ['web', 'www', '0123456789ab', 'web-host'] },
    );
    t.same(
      networkRequestOf('front', undefined, 'runcd', { front: null, back: { Aliases: ['api'] } }, 'abc'),
      { networks: ['front', 'back'], aliases: ['api', 'abc'] },
      'every network of EndpointsConfig is joined, the mode first',
    );
    t.throws(() => networkRequestOf('bridge', undefined, 'runcd', { bridge: { Aliases: ['x'] } }), {
      status: 400,
      message: 'network-scoped alias is supported only for containers in user defined networks',
    });
    t.same(
      networkRequestOf('default', undefined, 'runcd', undefined, 'abc'),
      {},
      'no ports, no network: none',
    );
  },
);
