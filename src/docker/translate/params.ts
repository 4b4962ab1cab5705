import type { Container } from '../../schemas/container.js';
import { parseSignal, type Signal } from '../../signals.js';
import { DockerError, notImplemented } from '../docker-errors.js';
import { dockerIdOf } from '../docker-ids.js';
import { dockerState } from './container-shapes.js';
import type { DockerEvent } from './events.js';
import { imageName } from './images.js';
import type { FastifyRequest } from 'fastify';

// ---- query parsing

export type Filters = Map<string, string[]>;

export function parseFilters(value: string | string[] | undefined): Filters {
  const text = first(value);
  const filters: Filters = new Map();
  if (text === undefined || text === '') return filters;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new DockerError(400, `invalid filters: ${text} is not JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null)
    throw new DockerError(400, 'invalid filters: not an object');
  for (const [key, values] of Object.entries(parsed as Record<string, unknown>)) {
    // Docker accepts both {"name": ["a"]} and the older {"name": {"a": true}}.
    const list = Array.isArray(values)
      ? values.map(String)
      : typeof values === 'object' && values !== null
        ? Object.keys(values)
        : [];
    filters.set(key, list);
  }
  return filters;
}

export const CONTAINER_FILTERS = new Set([
  'status',
  'label',
  'id',
  'name',
  'ancestor',
  'exited',
  'since',
  'before',
]);

export function matchesLabels(labels: Record<string, string>, wanted: string[] | undefined): boolean {
  return (wanted ?? []).every((item) => {
    const eq = item.indexOf('=');
    return eq === -1 ? item in labels : labels[item.slice(0, eq)] === item.slice(eq + 1);
  });
}

/** What the filters need beyond the container: its image's name, and a referenced container's creation time. */
export interface FilterFacts {
  imageOf: (container: Container) => string;
  /** since/before name a container (name or id); undefined when there is no such one. */
  createdOf: (reference: string) => string | undefined;
  /** The Docker name (the runc id unless renamed). */
  nameOf: (container: Container) => string;
}

const NO_FACTS: FilterFacts = {
  imageOf: () => '',
  createdOf: () => undefined,
  nameOf: (container) => container.id,
};

export function matchesContainerFilters(
  container: Container,
  filters: Filters,
  facts: FilterFacts = NO_FACTS,
): boolean {
  for (const key of filters.keys()) {
    if (!CONTAINER_FILTERS.has(key)) throw notImplemented(`the "${key}" filter of GET /containers/json`);
  }
  const status = filters.get('status');
  if (status?.length && !status.includes(dockerState(container))) return false;
  const ids = filters.get('id');
  if (ids?.length && !ids.some((id) => dockerIdOf(container.id).startsWith(id))) return false;
  const names = filters.get('name');
  if (names?.length && !names.some((name) => facts.nameOf(container).includes(name.replace(/^\//, ''))))
    return false;
  const ancestors = filters.get('ancestor');
  if (ancestors?.length && !ancestors.some((wanted) => sameImage(wanted, facts.imageOf(container))))
    return false;
  const exited = filters.get('exited');
  if (exited?.length) {
    for (const code of exited) {
      if (!/^-?\d+$/.test(code))
        throw new DockerError(400, `invalid filter 'exited=${code}': not an exit code`);
    }
    if (container.status !== 'stopped' || !exited.includes(String(container.exitCode ?? 0))) return false;
  }
  for (const [key, newer] of [
    ['since', true],
    ['before', false],
  ] as const) {
    const reference = filters.get(key)?.[0];
    if (reference === undefined) continue;
    const created = facts.createdOf(reference);
    if (created === undefined) throw new DockerError(404, `No such container: ${reference}`);
    if (newer ? container.created <= created : container.created >= created) return false;
  }
  return matchesLabels(container.labels, filters.get('label'));
}

export function matchesEventFilters(event: DockerEvent, runcId: string, filters: Filters): boolean {
  const containersWanted = filters.get('container');
  if (
    containersWanted?.length &&
    !containersWanted.some(
      (wanted) => wanted === runcId || (wanted.length > 0 && event.id.startsWith(wanted)),
    )
  ) {
    return false;
  }
  const actions = filters.get('event');
  if (actions?.length && !actions.includes(event.Action)) return false;
  const images = filters.get('image');
  if (images?.length && !images.some((wanted) => sameImage(wanted, event.Actor.Attributes.image)))
    return false;
  const types = filters.get('type');
  if (types?.length && !types.includes('container')) return false;
  return matchesLabels(event.Actor.Attributes, filters.get('label'));
}

/** `bb` is `bb:latest`, as the docker CLI means it; an invalid reference matches nothing. */
function sameImage(wanted: string, image: string | undefined): boolean {
  if (!image) return false;
  try {
    return imageName(wanted).name === image;
  } catch {
    return false;
  }
}

export function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export function queryBool(value: string | string[] | undefined): boolean {
  const text = first(value);
  return text === '1' || text === 'true' || text === 'True';
}

export function idParam(request: FastifyRequest): string {
  return (request.params as { id: string }).id;
}

export function timeoutParam(value: string | string[] | undefined): number | undefined {
  const text = first(value);
  if (text === undefined || text === '') return undefined;
  const seconds = Number(text);
  if (!Number.isInteger(seconds) || seconds < -1) {
    throw new DockerError(400, `t must be a whole number of seconds (-1 waits forever); got "${text}"`);
  }
  return seconds;
}

export function signalParam(value: string | string[] | undefined): Signal {
  const parsed = parseSignal(first(value) ?? '');
  if (!parsed.ok) throw new DockerError(400, `invalid signal: ${parsed.reason}`);
  return parsed.signal;
}

/** Docker sends unix seconds (with fractions) or RFC 3339; undefined when absent. */
/**
 * Docker's times: unix seconds (with a fraction) or RFC 3339. `since=0` is the epoch, so `docker events --since 0`
 * replays everything; `until=0` is Docker's "no end".
 */
export function timeParam(value: string | string[] | undefined, name: 'since' | 'until'): string | undefined {
  const text = first(value)?.trim();
  if (text === undefined || text === '' || (text === '0' && name === 'until')) return undefined;
  const date = /^\d+(\.\d+)?$/.test(text) ? new Date(Number(text) * 1000) : new Date(text);
  if (Number.isNaN(date.getTime())) {
    throw new DockerError(400, `${name} ${JSON.stringify(text)} is not a time: use unix seconds or RFC 3339`);
  }
  return date.toISOString();
}
