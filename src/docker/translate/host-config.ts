import type { z } from 'zod';
import type { MountSpec } from '../../schemas/bundle.js';
import { DockerError } from '../docker-errors.js';

/**
 * The options of `docker run` that change what a container is (its filesystems, privileges, devices, name
 * resolution, output). Each one either goes into the native bundle spec, where the same bundle policy as for a
 * native config judges it (a bind mount only from an --allow-mount-source directory, a tmpfs as an allowed
 * type), or is refused with a 400 naming the option: never accepted and dropped.
 */

type Mount = z.infer<typeof MountSpec>;

/** HostConfig fields runcd cannot honour, with the flag users know them by. Set (non-empty) means refused. */
const REFUSED: ReadonlyArray<[field: string, flag: string, why: string]> = [
  ['Privileged', '--privileged', 'runcd runs every container under its bundle policy'],
  ['CapAdd', '--cap-add', 'capabilities come from the bundle policy; use a native bundle'],
  ['CapDrop', '--cap-drop', 'capabilities come from the bundle policy; use a native bundle'],
  ['Devices', '--device', 'runcd passes no host devices into containers'],
  ['DeviceCgroupRules', '--device-cgroup-rule', 'runcd passes no host devices into containers'],
  ['SecurityOpt', '--security-opt', 'seccomp, AppArmor and no-new-privileges come from the bundle policy'],
  ['ExtraHosts', '--add-host', 'runcd writes no /etc/hosts for containers'],
  ['Dns', '--dns', 'runcd writes no /etc/resolv.conf for containers'],
  ['DnsSearch', '--dns-search', 'runcd writes no /etc/resolv.conf for containers'],
  ['DnsOptions', '--dns-option', 'runcd writes no /etc/resolv.conf for containers'],
  ['GroupAdd', '--group-add', 'give the groups with --user UID:GID'],
  ['VolumesFrom', '--volumes-from', 'name the volumes instead (-v NAME:/path)'],
  ['Sysctls', '--sysctl', 'runcd sets no sysctls'],
  ['Ulimits', '--ulimit', 'rlimits are the bundle spec’s; use a native bundle'],
  ['CpusetCpus', '--cpuset-cpus', 'runcd limits CPU time only (--cpus)'],
  ['CpuShares', '--cpu-shares', 'runcd limits CPU time only (--cpus)'],
  ['OomKillDisable', '--oom-kill-disable', 'the OOM killer always applies'],
  ['PidMode', '--pid', 'every runcd container has its own namespaces'],
  ['IpcMode', '--ipc', 'every runcd container has its own namespaces'],
  ['UTSMode', '--uts', 'every runcd container has its own namespaces'],
  ['UsernsMode', '--userns', 'every runcd container has its own namespaces'],
  ['CgroupParent', '--cgroup-parent', 'runcd places container cgroups itself'],
  ['Runtime', '--runtime', 'runcd runs its own runtime'],
];

const isSet = (value: unknown): boolean =>
  value === true ||
  (typeof value === 'number' && value !== 0) ||
  (typeof value === 'string' && value !== '') ||
  (Array.isArray(value) && value.length > 0) ||
  (typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length > 0);

const refuse = (flag: string, why: string) =>
  new DockerError(400, `runcd does not support ${flag} for Docker containers: ${why}`);

/** Mount options as one word each, no spaces or separators a mount(8) line would misread. */
const MOUNT_OPTION = /^[A-Za-z0-9_=.:+-]{1,256}$/;

function mountOptions(flag: string, text: string): string[] {
  const options = text.split(',').filter((option) => option !== '');
  for (const option of options) {
    if (!MOUNT_OPTION.test(option)) throw new DockerError(400, `${flag}: invalid mount option "${option}"`);
  }
  return options;
}

function absolute(flag: string, path: unknown, what: string): string {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new DockerError(400, `${flag}: the ${what} must be an absolute path; got ${JSON.stringify(path)}`);
  }
  return path;
}

/** Docker's tmpfs defaults (noexec, nosuid, nodev), then the caller's options, which mount applies in order. */
function tmpfs(destination: string, options: string[]): Mount {
  return { destination, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', ...options] };
}

/** A named volume a container mounts (`-v NAME:/path`, `--mount type=volume,src=NAME`): made if missing. */
export interface VolumeRequest {
  name: string;
  destination: string;
  readonly: boolean;
}

/** `-v /host:/container[:ro|rw]`, or `-v NAME:/container[:ro|rw]` (a named volume). */
function bindOf(entry: string): Mount | VolumeRequest {
  const [source, destination, options, ...rest] = entry.split(':');
  if (source === undefined || source === '' || destination === undefined || rest.length > 0) {
    throw new DockerError(400, `-v ${entry}: give HOST-PATH:CONTAINER-PATH[:ro]`);
  }
  absolute('-v', destination, 'container path');
  const flags = options === undefined ? [] : options.split(',');
  for (const flag of flags) {
    if (flag !== 'ro' && flag !== 'rw') {
      throw refuse(`-v ...:${flag}`, 'only ro and rw are supported as bind mount options');
    }
  }
  if (!source.startsWith('/')) return { name: source, destination, readonly: flags.includes('ro') };
  return { destination, source, type: 'bind', readonly: flags.includes('ro') };
}

interface DockerMount {
  Type?: unknown;
  Source?: unknown;
  Target?: unknown;
  ReadOnly?: unknown;
  TmpfsOptions?: { SizeBytes?: unknown; Mode?: unknown };
  BindOptions?: unknown;
  VolumeOptions?: unknown;
}

/** `--mount type=bind|tmpfs|volume,...`. */
function mountOf(mount: DockerMount): Mount | VolumeRequest {
  const destination = absolute('--mount', mount.Target, 'target');
  if (mount.Type === 'volume') {
    if (typeof mount.Source !== 'string' || mount.Source === '') {
      throw refuse('--mount type=volume without a source (an anonymous volume)', 'name the volume: src=NAME');
    }
    if (isSet(mount.VolumeOptions)) {
      throw refuse(
        '--mount volume-driver, volume-label and other volume options',
        'runcd volumes are local directories',
      );
    }
    return { name: mount.Source, destination, readonly: mount.ReadOnly === true };
  }
  if (mount.Type === 'bind') {
    if (isSet(mount.BindOptions))
      throw refuse(
        '--mount bind-propagation and other bind options',
        'runcd binds with rbind, nosuid, nodev',
      );
    return {
      destination,
      source: absolute('--mount', mount.Source, 'source'),
      type: 'bind',
      readonly: mount.ReadOnly === true,
    };
  }
  if (mount.Type === 'tmpfs') {
    const size = mount.TmpfsOptions?.SizeBytes;
    const mode = mount.TmpfsOptions?.Mode;
    return tmpfs(destination, [
      ...(typeof size === 'number' && size > 0 ? [`size=${Math.floor(size)}`] : []),
      ...(typeof mode === 'number' && mode > 0 ? [`mode=${(mode & 0o7777).toString(8)}`] : []),
      ...(mount.ReadOnly === true ? ['ro'] : []),
    ]);
  }
  throw refuse(
    `--mount type=${String(mount.Type)}`,
    'only type=bind, type=volume and type=tmpfs are supported',
  );
}

export interface HostConfigInput {
  Binds?: unknown;
  Mounts?: unknown;
  Tmpfs?: unknown;
  ShmSize?: unknown;
  LogConfig?: { Type?: unknown };
  [field: string]: unknown;
}

const isVolume = (mount: Mount | VolumeRequest): mount is VolumeRequest => 'name' in mount;

/**
 * The native mounts for a Docker create body's HostConfig (and Config.Volumes); throws on what runcd lacks.
 * Named volumes are not among them: volumeRequestsOf lists them, for the volume service to resolve.
 */
export function mountsOf(host: HostConfigInput, volumes: unknown): Mount[] {
  for (const [field, flag, why] of REFUSED) {
    if (isSet(host[field])) throw refuse(flag, why);
  }
  const driver = host.LogConfig?.Type;
  if (driver !== undefined && driver !== '' && driver !== 'json-file') {
    throw refuse(
      `--log-driver ${String(driver)}`,
      'output is kept as a log runcd serves to docker logs (json-file)',
    );
  }
  // Config.Volumes names each mount point; one that no -v or --mount covers is an anonymous volume (compose sends
  // both for its named volumes).
  const covered = new Set(bindsAndMounts(host).map((each) => each.destination));
  const anonymous =
    volumes && typeof volumes === 'object' ? Object.keys(volumes).filter((path) => !covered.has(path)) : [];
  if (anonymous.length > 0) {
    throw refuse(
      `-v ${anonymous.join(', ')} (an anonymous volume)`,
      'runcd has named volumes only; name it (-v NAME:/path) or bind-mount a host directory (-v /host/dir:/path)',
    );
  }
  const mounts: Mount[] = [];
  for (const each of bindsAndMounts(host)) if (!isVolume(each)) mounts.push(each);
  if (host.Tmpfs && typeof host.Tmpfs === 'object') {
    for (const [destination, options] of Object.entries(host.Tmpfs as Record<string, unknown>)) {
      mounts.push(
        tmpfs(absolute('--tmpfs', destination, 'path'), mountOptions('--tmpfs', String(options ?? ''))),
      );
    }
  }
  if (typeof host.ShmSize === 'number' && host.ShmSize > 0) {
    // Over runc's own /dev/shm (mounts apply in order, so this one is what the container sees).
    mounts.push({
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${Math.floor(host.ShmSize)}`],
    });
  }
  return mounts;
}

/** The named volumes of a create body, in the order given. */
export function volumeRequestsOf(host: HostConfigInput): VolumeRequest[] {
  return bindsAndMounts(host).filter(isVolume);
}

function bindsAndMounts(host: HostConfigInput): Array<Mount | VolumeRequest> {
  return [
    ...(Array.isArray(host.Binds) ? host.Binds.map((entry) => bindOf(String(entry))) : []),
    ...(Array.isArray(host.Mounts) ? host.Mounts.map((mount) => mountOf(mount as DockerMount)) : []),
  ];
}
