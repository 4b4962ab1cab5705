/**
 * Crash soak (issue 13): random concurrent operations against a runcd child process, SIGKILLed at a random moment
 * of every round and started again, after which runc, conmon, the store, the events and the exit codes must
 * agree. Bounded in rounds and in time. Prints its figures; exits non-zero on any violation.
 *
 *   npm run build && node dist/bench/soak.js --rounds 500 --seconds 3000 [--seed N] [--containers 8]
 *
 * test/integration/soak.test.ts runs a few rounds of it in the suite.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Container } from '../src/schemas/container.js';
import type { ContainerEvent } from '../src/schemas/events.js';
import { eventsOf, runcIds, runcStatus } from '../test/helpers/crash-checks.js';
import { createSandbox, DaemonProcess, destroySandbox } from '../test/helpers/sandbox.js';

export interface SoakOptions {
  rounds: number;
  seconds: number;
  maxContainers: number;
  seed: number;
  log?: (line: string) => void;
  /** Ends the soak after the current round (and its cleanup) once aborted. */
  signal?: AbortSignal;
}

export interface SoakReport {
  seed: number;
  rounds: number;
  kills: number;
  containers: number;
  operations: number;
  interrupted: number;
  seconds: number;
  violations: Record<string, number>;
  examples: string[];
}

type Operation = 'create' | 'run' | 'start' | 'exec' | 'kill' | 'stop' | 'delete' | 'restart';
const OPERATIONS: Operation[] = ['create', 'run', 'start', 'exec', 'kill', 'stop', 'delete', 'restart'];

interface Tracked {
  id: string;
  /** A create or run answered 201. */
  acked: boolean;
  /** A delete answered 204. */
  deleted: boolean;
  /** A create or delete that the kill interrupted: either outcome is right, the next check learns which. */
  unsure: boolean;
  /** This round: operations fired on it, and whether runc had it when the round began. */
  touched: number;
  inRuncBefore: boolean;
  /** A delete the kill interrupted (this round). */
  deleteInterrupted: boolean;
}

/** mulberry32: a small seeded generator, so a failing run can be repeated with its seed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

/** The ids whose conmon (one started for this sandbox's state dir) is alive. */
function liveMonitors(stateDir: string): Set<string> {
  const ids = new Set<string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (!argv[0]?.endsWith('conmon') || !argv.some((arg) => arg.startsWith(stateDir))) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
      const id = argv[argv.indexOf('-c') + 1];
      if (id) ids.add(id);
    } catch {
      // gone while we looked
    }
  }
  return ids;
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const next = random(options.seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const log = options.log ?? (() => undefined);
  const sandbox = createSandbox('soak');
  const bundles = [
    sandbox.bundle('sleeper'),
    sandbox.bundle('trapper', ['sh', '-c', 'trap "exit 3" TERM; while true; do sleep 0.1; done']),
    sandbox.bundle('short', ['sh', '-c', 'sleep 0.3; exit 7']),
  ];
  const daemon = new DaemonProcess(sandbox);
  const tracked = new Map<string, Tracked>();
  const report: SoakReport = {
    seed: options.seed,
    rounds: 0,
    kills: 0,
    containers: 0,
    operations: 0,
    interrupted: 0,
    seconds: 0,
    violations: {},
    examples: [],
  };
  let found: Array<[string, string]> = [];
  const violation = (kind: string, detail: string) => found.push([kind, detail]);
  // A broken state stays broken round after round: each kind counts once per container.
  const seen = new Set<string>();
  const record = (kind: string, detail: string) => {
    const key = `${kind} ${detail.split(/[ :]/)[0]}`;
    if (seen.has(key)) return;
    seen.add(key);
    report.violations[kind] = (report.violations[kind] ?? 0) + 1;
    if (report.examples.length < 20) report.examples.push(`round ${report.rounds}: ${kind}: ${detail}`);
    log(`violation ${kind}: ${detail}`);
  };
  const started = Date.now();
  const since = new Date(started - 1000).toISOString();
  try {
    await daemon.start();
    while (
      report.rounds < options.rounds &&
      Date.now() - started < options.seconds * 1000 &&
      !options.signal?.aborted
    ) {
      report.rounds++;
      const before = new Set(runcIds(sandbox.runtimeRoot));
      for (const entry of tracked.values()) {
        Object.assign(entry, { touched: 0, inRuncBefore: before.has(entry.id), deleteInterrupted: false });
      }
      const live = [...tracked.values()].filter((entry) => !entry.deleted);
      const count = 2 + Math.floor(next() * 5);
      const pending: Array<Promise<void>> = [];
      for (let index = 0; index < count; index++) {
        let operation = pick(OPERATIONS);
        if ((operation === 'create' || operation === 'run') && live.length >= options.maxContainers) {
          operation = 'delete';
        }
        if (operation !== 'create' && operation !== 'run' && live.length === 0) operation = 'run';
        pending.push(fire(operation));
      }
      // The kill lands anywhere from before the first runc command to after the last answer.
      await new Promise((resolve) => setTimeout(resolve, Math.floor(next() * 400)));
      await daemon.stop('SIGKILL');
      report.kills++;
      await Promise.all(pending);
      await daemon.start();
      await check();
    }
    // The end: everything deleted, nothing left in runc or as a monitor.
    for (const entry of tracked.values()) {
      if (entry.deleted) continue;
      const response = await daemon.request('DELETE', `/containers/${entry.id}?force=true`);
      if (response.status === 204 || response.status === 404) entry.deleted = true;
      else record('final_delete_failed', `${entry.id}: ${response.status} ${JSON.stringify(response.body)}`);
    }
    await check();
    const leftovers = runcIds(sandbox.runtimeRoot);
    if (leftovers.length > 0) record('runc_leftover', leftovers.join(' '));
  } finally {
    report.seconds = Math.round((Date.now() - started) / 1000);
    await daemon.close().catch(() => undefined);
    destroySandbox(sandbox);
  }
  return report;

  async function fire(operation: Operation): Promise<void> {
    report.operations++;
    let entry: Tracked;
    if (operation === 'create' || operation === 'run') {
      entry = {
        id: sandbox.id(`c${report.containers++}`),
        acked: false,
        deleted: false,
        unsure: false,
        touched: 0,
        inRuncBefore: false,
        deleteInterrupted: false,
      };
      tracked.set(entry.id, entry);
    } else {
      entry = pick([...tracked.values()].filter((candidate) => !candidate.deleted));
    }
    const id = entry.id;
    entry.touched++;
    const request = (method: string, path: string, body?: unknown) => daemon.request(method, path, body);
    try {
      switch (operation) {
        case 'create':
        case 'run': {
          const response = await request('POST', '/containers', {
            id,
            bundle: pick(bundles),
            start: operation === 'run',
          });
          if (response.status === 201) entry.acked = true;
          break;
        }
        case 'delete': {
          const response = await request('DELETE', `/containers/${id}${next() < 0.5 ? '?force=true' : ''}`);
          if (response.status === 204) entry.deleted = true;
          break;
        }
        case 'start':
          await request('POST', `/containers/${id}/start`);
          break;
        case 'exec':
          await request('POST', `/containers/${id}/exec`, { args: ['true'] });
          break;
        case 'kill':
          await request('POST', `/containers/${id}/kill?signal=${pick(['KILL', 'TERM'])}`);
          break;
        case 'stop':
          await request('POST', `/containers/${id}/stop?timeout=1`);
          break;
        case 'restart':
          await request('POST', `/containers/${id}/restart?timeout=1`);
          break;
      }
    } catch {
      // The daemon died under the request: its outcome is for the check to find.
      report.interrupted++;
      if (operation === 'create' || operation === 'run' || operation === 'delete') entry.unsure = true;
      if (operation === 'delete') entry.deleteInterrupted = true;
    }
  }

  /**
   * The invariants, asked until they hold or 3 s have passed: a container that exits during the check (the short
   * bundle lives 0.3 s) is for a moment stopped in runc and not yet in runcd, which is no violation; one that
   * stays is.
   */
  async function check(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      found = [];
      await checkOnce();
      if (found.length === 0) return;
      if (attempt === 6) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    for (const [kind, detail] of found) record(kind, detail);
  }

  async function checkOnce(): Promise<void> {
    const events = new Map<string, ContainerEvent[]>();
    for (const event of await eventsOf(daemon, since)) {
      events.set(event.id, [...(events.get(event.id) ?? []), event]);
    }
    const rows = new Map(
      (await daemon.request<Container[]>('GET', '/containers')).body.map((row) => [row.id, row]),
    );
    const inRunc = new Set(runcIds(sandbox.runtimeRoot));
    const monitors = liveMonitors(sandbox.stateDir);
    for (const entry of tracked.values()) {
      const row = rows.get(entry.id);
      const history = events.get(entry.id) ?? [];
      if (entry.unsure) {
        // An interrupted create that was undone, or an interrupted delete that was finished: both are right.
        entry.deleted = !row;
        entry.acked ||= row !== undefined;
        entry.unsure = false;
      } else if (entry.acked && !entry.deleted && !row) {
        violation('create_lost', entry.id);
      }
      if (entry.deleted && row) violation('delete_came_back', entry.id);
      // A delete killed after its `runc delete` and leaving the row: the phantom of issue 13.
      const alone = entry.deleteInterrupted && entry.touched === 1 && entry.inRuncBefore;
      if (alone && row && !inRunc.has(entry.id)) violation('phantom_row', entry.id);
      const creates = history.filter((event) => event.type === 'create').length;
      const deletes = history.filter((event) => event.type === 'delete').length;
      if (row && creates === 0) violation('create_event_missing', entry.id);
      if (!row && creates > 0 && deletes !== 1) violation('delete_events_not_one', `${entry.id}: ${deletes}`);
      if (!row && inRunc.has(entry.id)) violation('runc_without_row', entry.id);
      if (!row && monitors.has(entry.id)) violation('monitor_without_row', entry.id);
      if (!row) continue;
      checkRow(row, history, inRunc.has(entry.id), monitors.has(entry.id));
    }
  }

  function checkRow(row: Container, history: ContainerEvent[], inRunc: boolean, monitored: boolean): void {
    const runc = inRunc ? runcStatus(sandbox.runtimeRoot, row.id) : undefined;
    if (row.status === 'creating') violation('stuck_creating', row.id);
    if (row.monitor === 'lost') violation('monitor_lost', `${row.id} (${row.status})`);
    if (row.status === 'stopped') {
      if (runc !== undefined && runc !== 'stopped')
        violation('runc_disagrees', `${row.id}: stopped, runc ${runc}`);
      if (row.exitCode === null) violation('exit_code_lost', row.id);
    } else {
      if (runc !== row.status)
        violation('runc_disagrees', `${row.id}: ${row.status}, runc ${runc ?? 'none'}`);
      if (!monitored && runc !== undefined) violation('monitor_dead', `${row.id} (${row.status})`);
    }
    // Every instance ends with exactly one die, carrying the exit code the row shows.
    let lastDie: ContainerEvent | undefined;
    let sinceBoundary = 0;
    for (const event of history) {
      if (event.type === 'create' || event.type === 'start' || event.type === 'restart') {
        sinceBoundary = 0;
        lastDie = undefined;
      } else if (event.type === 'die') {
        sinceBoundary++;
        lastDie = event;
        if (sinceBoundary > 1) violation('die_duplicated', `${row.id} seq ${event.seq}`);
      }
    }
    if (row.status === 'stopped' && !lastDie) violation('die_missing', row.id);
    if (row.status !== 'stopped' && lastDie) violation('die_while_live', `${row.id} (${row.status})`);
    if (row.status === 'stopped' && lastDie && lastDie.attributes.exitCode !== row.exitCode) {
      violation('exit_code_mismatch', `${row.id}: row ${row.exitCode}, die ${lastDie.attributes.exitCode}`);
    }
  }
}

export function formatSoakReport(report: SoakReport): string {
  const kinds = Object.entries(report.violations);
  return [
    `soak: seed ${report.seed}, ${report.rounds} rounds, ${report.kills} SIGKILLs, ${report.containers} containers, ` +
      `${report.operations} operations (${report.interrupted} interrupted by a kill), ${report.seconds} s`,
    kinds.length === 0
      ? 'violations: none'
      : `violations: ${kinds.map(([kind, count]) => `${kind} ${count}`).join(', ')}`,
    ...report.examples.map((example) => `  ${example}`),
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '50' },
      seconds: { type: 'string', default: '600' },
      containers: { type: 'string', default: '8' },
      seed: { type: 'string' },
      verbose: { type: 'boolean', default: false },
    },
  });
  // Ctrl-C or a SIGTERM ends the round in progress, then cleans up (no container or monitor is left behind).
  const stop = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort());
  const report = await runSoak({
    signal: stop.signal,
    rounds: Number(values.rounds),
    seconds: Number(values.seconds),
    maxContainers: Number(values.containers),
    seed: values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31),
    log: (line) => {
      if (values.verbose) console.error(line);
    },
  });
  console.log(formatSoakReport(report));
  if (Object.keys(report.violations).length > 0) process.exitCode = 1;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
