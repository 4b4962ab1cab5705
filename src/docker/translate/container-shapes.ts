import type { ContainerService } from '../../lifecycle/container-service.js';
import { limitsOf } from '../../lifecycle/container-resources.js';
import type { OciSpec } from '../../runtime/oci.js';
import type { Container } from '../../schemas/container.js';
import { dockerIdOf } from '../docker-ids.js';
import { networkModeOf, networkSettingsOf, portBindingsOf, portSummaryOf } from './networks.js';

// ---- translation of runcd's view into Docker's shapes

/** What the container runs, as runc was told (runcd's checked copy of config.json); empty when unknown. */
export interface RunView {
  command: string[];
  env: string[];
  cwd: string;
  /** Docker's spelling: `uid` (gid 0) or `uid:gid`; '' for root. */
  user: string;
  memoryBytes: number | null;
  cpus: number | null;
  pidsLimit: number | null;
  /** root.readonly: `--read-only`, or a container without a writable layer of its own. */
  readonlyRootfs: boolean;
  /** process.terminal: `docker run -t` (conmon keeps its stdin open for attaches). */
  tty: boolean;
}

const UNKNOWN_RUN: RunView = {
  command: [],
  env: [],
  cwd: '',
  user: '',
  memoryBytes: null,
  cpus: null,
  pidsLimit: null,
  readonlyRootfs: false,
  tty: false,
};

/** The config runc runs (runcd's checked copy), not the caller's file, which may have changed. */
export async function runViewOf(containers: ContainerService, container: Container): Promise<RunView> {
  let config: OciSpec | undefined;
  try {
    config = await containers.runningConfig(container.id);
  } catch {
    return UNKNOWN_RUN;
  }
  if (!config) return UNKNOWN_RUN;
  const process = config.process;
  const uid = process?.user.uid ?? 0;
  const gid = process?.user.gid ?? 0;
  return {
    command: process?.args ?? [],
    env: process?.env ?? [],
    cwd: process?.cwd ?? '',
    user: uid === 0 && gid === 0 ? '' : gid === 0 ? String(uid) : `${uid}:${gid}`,
    readonlyRootfs: config.root?.readonly === true,
    tty: process?.terminal === true,
    ...limitsOf(config),
  };
}

/** The image a container was made from: the name Docker shows and the id `docker inspect` reports. */
export interface ImageRef {
  name: string;
  id: string;
}

export function dockerState(container: Container): string {
  return container.status === 'stopped'
    ? 'exited'
    : container.status === 'creating'
      ? 'created'
      : container.status;
}

export function unixSeconds(time: string | null): number {
  return time ? Math.floor(Date.parse(time) / 1000) : 0;
}

export function humanDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 1) return 'Less than a second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return minutes === 1 ? 'About a minute' : `${minutes} minutes`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return hours === 1 ? 'About an hour' : `${hours} hours`;
  return `${Math.round(hours / 24)} days`;
}

export function statusText(container: Container): string {
  const now = Date.now();
  switch (container.status) {
    case 'running':
      return `Up ${humanDuration(now - Date.parse(container.startedAt ?? container.created))}`;
    case 'paused':
      return `Up ${humanDuration(now - Date.parse(container.startedAt ?? container.created))} (Paused)`;
    case 'stopped':
      return `Exited (${container.exitCode ?? 0}) ${humanDuration(now - Date.parse(container.finishedAt ?? container.created))} ago`;
    default:
      return 'Created';
  }
}

export function summaryOf(
  container: Container,
  run: RunView,
  image: ImageRef,
  name: string,
): Record<string, unknown> {
  return {
    Id: dockerIdOf(container.id),
    Names: [`/${name}`],
    Image: image.name,
    ImageID: image.id,
    Command: run.command.join(' '),
    Created: unixSeconds(container.created),
    Ports: portSummaryOf(container),
    Labels: container.labels,
    State: dockerState(container),
    Status: statusText(container),
    HostConfig: { NetworkMode: networkModeOf(container) },
    NetworkSettings: { Networks: networkSettingsOf(container).Networks },
    Mounts: [],
  };
}

export const ZERO_TIME = '0001-01-01T00:00:00Z';

export function inspectOf(
  container: Container,
  run: RunView,
  image: ImageRef,
  name: string,
): Record<string, unknown> {
  const state = dockerState(container);
  const command = run.command;
  return {
    Id: dockerIdOf(container.id),
    Created: container.created,
    Path: command[0] ?? '',
    Args: command.slice(1),
    State: {
      Status: state,
      Running: container.status === 'running' || container.status === 'paused',
      Paused: container.status === 'paused',
      Restarting: false,
      OOMKilled: container.oomKilled,
      Dead: false,
      Pid: container.pid,
      ExitCode: container.exitCode ?? 0,
      Error: '',
      StartedAt: container.startedAt ?? ZERO_TIME,
      FinishedAt: container.finishedAt ?? ZERO_TIME,
    },
    Image: image.id,
    ResolvConfPath: '',
    HostnamePath: '',
    HostsPath: '',
    LogPath: '',
    Name: `/${name}`,
    RestartCount: container.restartCount,
    Driver: 'runcd-bundles',
    Platform: 'linux',
    MountLabel: '',
    ProcessLabel: '',
    AppArmorProfile: '',
    HostConfig: {
      NetworkMode: networkModeOf(container),
      PortBindings: portBindingsOf(container),
      RestartPolicy: {
        Name: container.restartPolicy.name,
        MaximumRetryCount: container.restartPolicy.maxRetries ?? 0,
      },
      AutoRemove: container.autoRemove,
      // Output is kept by conmon in a file per container and read back by `docker logs`, which is what clients
      // (docker-py's run, compose's logs) check for before they read logs: json-file is the driver that does so.
      LogConfig: { Type: 'json-file', Config: {} },
      Memory: run.memoryBytes ?? 0,
      NanoCpus: run.cpus === null ? 0 : Math.round(run.cpus * 1e9),
      PidsLimit: run.pidsLimit,
      ReadonlyRootfs: run.readonlyRootfs,
    },
    GraphDriver: { Name: 'runcd-bundles', Data: { RootFs: container.rootfs, Bundle: container.bundle } },
    Mounts: [],
    Config: {
      Hostname: container.id,
      User: run.user,
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      Tty: run.tty,
      OpenStdin: run.tty,
      StdinOnce: false,
      Env: run.env,
      Cmd: command,
      Image: image.name,
      WorkingDir: run.cwd,
      Entrypoint: null,
      Labels: container.labels,
      StopSignal: container.stopSignal,
      StopTimeout: container.stopTimeout,
    },
    NetworkSettings: networkSettingsOf(container),
  };
}
