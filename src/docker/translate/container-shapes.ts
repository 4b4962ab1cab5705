import type { ContainerService } from '../../lifecycle/container-service.js';
import type { Container } from '../../schemas/container.js';
import { dockerIdOf } from '../docker-ids.js';
import { networkModeOf, networkSettingsOf, portBindingsOf, portSummaryOf } from './networks.js';

// ---- translation of runcd's view into Docker's shapes

/** The command of the config runc runs (runcd's checked copy), not the caller's file, which may have changed. */
export async function commandOf(containers: ContainerService, container: Container): Promise<string[]> {
  try {
    return (await containers.runningConfig(container.id))?.process?.args ?? [];
  } catch {
    return [];
  }
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

export function summaryOf(container: Container, command: string[], image: string): Record<string, unknown> {
  return {
    Id: dockerIdOf(container.id),
    Names: [`/${container.id}`],
    Image: image,
    ImageID: '',
    Command: command.join(' '),
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

export function inspectOf(container: Container, command: string[], image: string): Record<string, unknown> {
  const state = dockerState(container);
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
    Image: image,
    ResolvConfPath: '',
    HostnamePath: '',
    HostsPath: '',
    LogPath: '',
    Name: `/${container.id}`,
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
    },
    GraphDriver: { Name: 'runcd-bundles', Data: { RootFs: container.rootfs, Bundle: container.bundle } },
    Mounts: [],
    Config: {
      Hostname: container.id,
      User: '',
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      Tty: false,
      OpenStdin: false,
      StdinOnce: false,
      Env: [],
      Cmd: command,
      Image: image,
      WorkingDir: '',
      Entrypoint: null,
      Labels: container.labels,
      StopSignal: container.stopSignal,
      StopTimeout: container.stopTimeout,
    },
    NetworkSettings: networkSettingsOf(container),
  };
}
