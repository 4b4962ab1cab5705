import t from 'tap';
import { DockerError } from '../../src/docker/docker-errors.js';
import { mountsOf, volumeRequestsOf } from '../../src/docker/translate/host-config.js';

// What the docker CLI sends for a plain `docker run` (its zero values) must pass; every option that changes the
// container becomes a mount or a refusal naming the flag.
const CLI_DEFAULTS = {
  Binds: null,
  LogConfig: { Type: '', Config: {} },
  CapAdd: null,
  CapDrop: null,
  Dns: [],
  DnsOptions: [],
  DnsSearch: [],
  ExtraHosts: null,
  GroupAdd: null,
  IpcMode: '',
  PidMode: '',
  Privileged: false,
  SecurityOpt: null,
  ShmSize: 0,
  Devices: [],
  Ulimits: [],
  OomKillDisable: null,
};

function refusal(host: Record<string, unknown>, volumes?: unknown): string {
  try {
    mountsOf({ ...CLI_DEFAULTS, ...host }, volumes);
  } catch (error) {
    if (error instanceof DockerError && error.status === 400) return error.message;
    throw error;
  }
  throw new Error('expected a refusal');
}

t.test('the CLI defaults and json-file logging make no mounts', async (t) => {
  t.same(mountsOf(CLI_DEFAULTS, {}), []);
  t.same(mountsOf({ ...CLI_DEFAULTS, LogConfig: { Type: 'json-file' } }, undefined), []);
});

t.test('binds, tmpfs and shm become bundle mounts', async (t) => {
  t.same(mountsOf({ Binds: ['/srv/data:/data:ro', '/srv/logs:/logs'] }, undefined), [
    { destination: '/data', source: '/srv/data', type: 'bind', readonly: true },
    { destination: '/logs', source: '/srv/logs', type: 'bind', readonly: false },
  ]);
  t.same(mountsOf({ Tmpfs: { '/run': 'size=1m,exec' } }, undefined), [
    {
      destination: '/run',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'nodev', 'noexec', 'size=1m', 'exec'],
    },
  ]);
  t.same(
    mountsOf(
      { Mounts: [{ Type: 'tmpfs', Target: '/scratch', TmpfsOptions: { SizeBytes: 2097152, Mode: 0o1777 } }] },
      undefined,
    ),
    [
      {
        destination: '/scratch',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'nodev', 'noexec', 'size=2097152', 'mode=1777'],
      },
    ],
  );
  t.match(mountsOf({ ShmSize: 8388608 }, undefined), [
    { destination: '/dev/shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=8388608'] },
  ]);
});

t.test('what runcd cannot honour is refused, naming the flag', async (t) => {
  t.match(refusal({ Privileged: true }), /--privileged/);
  t.match(refusal({ CapAdd: ['NET_ADMIN'] }), /--cap-add/);
  t.match(refusal({ Devices: [{ PathOnHost: '/dev/kvm' }] }), /--device/);
  t.match(refusal({ ExtraHosts: ['db:10.0.0.2'] }), /--add-host/);
  t.match(refusal({ Dns: ['10.0.0.53'] }), /--dns/);
  t.match(refusal({ GroupAdd: ['50'] }), /--group-add/);
  t.match(refusal({ SecurityOpt: ['seccomp=unconfined'] }), /--security-opt/);
  t.match(refusal({ LogConfig: { Type: 'syslog' } }), /--log-driver syslog/);
  t.match(refusal({}, { '/data': {} }), /-v \/data \(an anonymous volume\)/);
  t.match(refusal({ Binds: ['/srv:/srv:z'] }), /only ro and rw/);
  t.match(refusal({ Binds: ['/srv:relative'] }), /container path must be an absolute path/);
  t.match(refusal({ Mounts: [{ Type: 'volume', Target: '/v' }] }), /--mount type=volume without a source/);
  t.match(refusal({ Binds: ['cache:/cache:nocopy'] }), /only ro and rw/);
  t.match(refusal({ Tmpfs: { '/run': 'size=1m;rm -rf' } }), /--tmpfs: invalid mount option/);
});

t.test('named volumes are requests for the volume service, not mounts', async (t) => {
  const host = {
    Binds: ['/srv/data:/data', 'cache:/cache:ro'],
    Mounts: [{ Type: 'volume', Source: 'db', Target: '/var/lib/db' }],
  };
  t.same(mountsOf(host, undefined), [
    { destination: '/data', source: '/srv/data', type: 'bind', readonly: false },
  ]);
  t.same(
    mountsOf({ Binds: ['store:/store:rw'] }, { '/store': {} }),
    [],
    'Config.Volumes covered by a -v is no anonymous volume (compose sends both)',
  );
  t.same(volumeRequestsOf(host), [
    { name: 'cache', destination: '/cache', readonly: true },
    { name: 'db', destination: '/var/lib/db', readonly: false },
  ]);
});
