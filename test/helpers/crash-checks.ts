import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerEvent } from '../../src/schemas/events.js';
import { RUNTIME_BINARY, type DaemonProcess } from './sandbox.js';

/**
 * What the three witnesses of a container say after a crash: runc (its own root), conmon (/proc) and runcd (its
 * API, events included). The crash test and the soak check that they agree.
 */

/** `runc state`'s status for `id` in `runtimeRoot`, or undefined when runc has no such container. */
export function runcStatus(runtimeRoot: string, id: string): string | undefined {
  const result = spawnSync(RUNTIME_BINARY, ['--root', runtimeRoot, 'state', id], { encoding: 'utf8' });
  if (result.status !== 0) return undefined;
  return (JSON.parse(result.stdout) as { status: string }).status;
}

/** The ids `runc list` knows in `runtimeRoot`. */
export function runcIds(runtimeRoot: string): string[] {
  const result = spawnSync(RUNTIME_BINARY, ['--root', runtimeRoot, 'list', '--format', 'json'], {
    encoding: 'utf8',
  });
  if (result.status !== 0) return [];
  return ((JSON.parse(result.stdout || 'null') as Array<{ id: string }> | null) ?? []).map(
    (entry) => entry.id,
  );
}

/** Whether the conmon that runcd started for `id` (its pid file in the state dir) is alive. */
export function conmonAlive(stateDir: string, id: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(join(stateDir, 'containers', id, 'conmon.pid'), 'utf8').trim());
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(id);
  } catch {
    return false;
  }
}

/** Every stored event of `ids` from `since` until now (a finite replay of GET /events). */
export async function eventsOf(
  daemon: DaemonProcess,
  since: string,
  ids?: string[],
): Promise<ContainerEvent[]> {
  const query = new URLSearchParams({ since, until: new Date().toISOString() });
  for (const id of ids ?? []) query.append('id', id);
  const text = await daemon.requestText('GET', `/events?${query.toString()}`);
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as ContainerEvent);
}

/** How many events of each type. */
export function countByType(events: ContainerEvent[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const event of events) counts[event.type] = (counts[event.type] ?? 0) + 1;
  return counts;
}
