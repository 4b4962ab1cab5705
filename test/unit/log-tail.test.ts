import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { ContainerService } from '../../src/lifecycle/container-service.js';
import { LogService, type LogOptions } from '../../src/lifecycle/log-service.js';
import {
  LogAssembler,
  readLogLines,
  type LogEntry,
  type LogStream,
} from '../../src/runtime/container-log.js';

/**
 * The tail is read backwards from the end of the file; whatever it finds must be exactly what reading the whole
 * file forwards and keeping the last lines gives (the behaviour runcd had, and docker logs has), for every tail,
 * with partial (P) records of two interleaved streams and records that straddle the reader's 64 KiB chunks.
 */

const dir = mkdtempSync(join(tmpdir(), 'runcd-log-tail-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** A LogService over a fixed file: the only thing it asks the container service for is the log source. */
function serviceFor(path: string, running = false): LogService {
  const containers = {
    logSource: () => ({ path, running, stopped: new Promise(() => undefined), cancel: () => undefined }),
  };
  return new LogService(containers as unknown as ContainerService);
}

async function collect(path: string, options: LogOptions): Promise<string[]> {
  const lines: string[] = [];
  await serviceFor(path).stream(
    'c',
    options,
    { write: (entry) => lines.push(`${entry.stream}:${entry.line}`) > 0, drained: async () => undefined },
    new AbortController().signal,
  );
  return lines;
}

/** What the whole file read forwards gives: every line, then the lines still being written. */
async function reference(path: string, options: LogOptions): Promise<string[]> {
  const streams = new Set<LogStream>(options.stream === 'all' ? ['stdout', 'stderr'] : [options.stream]);
  const assembler = new LogAssembler({ streams, since: options.since, until: options.until });
  const entries: LogEntry[] = [];
  await readLogLines(path, 0, (line) => {
    const entry = assembler.push(line);
    if (entry) entries.push(entry);
  });
  entries.push(...assembler.flush());
  const all = entries.map((entry) => `${entry.stream}:${entry.line}`);
  return options.tail === undefined ? all : options.tail === 0 ? [] : all.slice(-options.tail);
}

/** Deterministic pseudo-random numbers, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

t.test('a tail read backwards equals the last lines of a forward read', async (t) => {
  for (const seed of [1, 2, 3]) {
    const next = random(seed);
    const path = join(dir, `log-${seed}`);
    const records: string[] = [];
    // ~6000 records of up to 300 bytes: several 64 KiB chunks.
    for (let index = 0; index < 6000; index++) {
      const second = String(Math.floor(index / 100)).padStart(2, '0');
      const time = `2026-01-01T00:${String(Math.floor(index / 6000)).padStart(2, '0')}:${second.slice(-2)}.${String(index).padStart(9, '0')}Z`;
      const stream = next() < 0.3 ? 'stderr' : 'stdout';
      const partial = next() < 0.35 ? 'P' : 'F';
      records.push(`${time} ${stream} ${partial} r${index}-${'x'.repeat(Math.floor(next() * 300))}`);
    }
    // The end: a line still being written on stdout, and half a record conmon has not finished.
    writeFileSync(path, records.join('\n') + '\n2026-01-01T00:59:59.000000000Z stdout P still-writing\n');
    appendFileSync(path, '2026-01-01T00:59:59.5Z stdout F unfinish');
    for (const stream of ['all', 'stdout', 'stderr'] as const) {
      for (const tail of [undefined, 0, 1, 2, 3, 7, 50, 999, 100_000]) {
        const options: LogOptions = { follow: false, tail, stream };
        t.same(
          await collect(path, options),
          await reference(path, options),
          `seed ${seed}, ${stream}, tail ${tail}`,
        );
      }
    }
    const since = '2026-01-01T00:00:30.000000000Z';
    const until = '2026-01-01T00:00:45.000000000Z';
    for (const tail of [undefined, 1, 5, 200]) {
      const options: LogOptions = { follow: false, tail, stream: 'all', since, until };
      t.same(
        await collect(path, options),
        await reference(path, options),
        `seed ${seed}, since/until, tail ${tail}`,
      );
    }
  }
});

t.test('following, a line still being written is not part of the tail; it shows once finished', async (t) => {
  const path = join(dir, 'follow');
  writeFileSync(
    path,
    [
      '2026-01-01T00:00:01Z stdout F one',
      '2026-01-01T00:00:02Z stderr F two',
      '2026-01-01T00:00:03Z stdout F three',
      '2026-01-01T00:00:04Z stdout P thr',
      '',
    ].join('\n'),
  );
  let stop!: () => void;
  const containers = {
    logSource: () => ({
      path,
      running: true,
      stopped: new Promise((resolve) => (stop = () => resolve(undefined))),
      cancel: () => undefined,
    }),
  };
  const lines: string[] = [];
  const done = new LogService(containers as unknown as ContainerService).stream(
    'c',
    { follow: true, tail: 2, stream: 'all' },
    { write: (entry) => lines.push(`${entry.stream}:${entry.line}`) > 0, drained: async () => undefined },
    new AbortController().signal,
  );
  while (lines.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
  t.same(lines, ['stderr:two', 'stdout:three'], 'the last two finished lines');
  appendFileSync(path, '2026-01-01T00:00:05Z stdout F ee\n');
  stop();
  await done;
  t.same(lines, ['stderr:two', 'stdout:three', 'stdout:three'], 'the line in progress, whole, after them');
});

t.test('a tail of an empty or missing log is empty', async (t) => {
  const path = join(dir, 'empty');
  writeFileSync(path, '');
  t.same(await collect(path, { follow: false, tail: 5, stream: 'all' }), []);
  t.same(await collect(join(dir, 'missing'), { follow: false, tail: 5, stream: 'all' }), []);
});
