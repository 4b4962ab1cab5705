import type { ContainerEvent } from '../../schemas/events.js';
import { dockerIdOf } from '../docker-ids.js';

export const EVENT_ACTIONS: Readonly<Record<string, string>> = {
  create: 'create',
  start: 'start',
  exec: 'exec_die',
  kill: 'kill',
  stop: 'stop',
  die: 'die',
  pause: 'pause',
  resume: 'unpause',
  restart: 'restart',
  delete: 'destroy',
};

export interface DockerEvent {
  status: string;
  id: string;
  from: string;
  Type: 'container';
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: 'local';
  time: number;
  timeNano: number;
}

/**
 * `image`: the name of the container's image ('' for a container of the native API, made from a bundle path);
 * `name`: its Docker name (its runc id unless renamed).
 */
export function dockerEventOf(
  event: ContainerEvent,
  labels: Record<string, string>,
  image = '',
  name = event.id,
): DockerEvent {
  const action = EVENT_ACTIONS[event.type] ?? event.type;
  const attributes: Record<string, string> = { ...labels, ...(image ? { image } : {}), name };
  for (const [key, value] of Object.entries(event.attributes)) {
    if (value !== null) attributes[key] = String(value);
  }
  const ms = Date.parse(event.time);
  const id = dockerIdOf(event.id);
  return {
    status: action,
    id,
    from: image,
    Type: 'container',
    Action: action,
    Actor: { ID: id, Attributes: attributes },
    scope: 'local',
    time: Math.floor(ms / 1000),
    timeNano: ms * 1_000_000,
  };
}
