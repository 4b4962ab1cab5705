import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BenchError } from './drivers.js';
import { section, type Section } from './report.js';
import type { RuncdDaemon } from './runcd-driver.js';
import { ms, Samples, timed } from './stats.js';
import { RUNC } from './workspace.js';

const execFileAsync = promisify(execFile);

export interface ScaleOptions {
  /** Container counts at which reads are measured; the largest is B5's "with N containers". */
  levels: number[];
  /** GET /containers/:id requests per level (runc state gets a tenth, at least 5). */
  reads: number;
  /** GET /containers requests per level (runc list gets a fifth, at least 3). */
  lists: number;
  /** Containers killed from the host for the read-after-kill and exit-to-event figures. */
  kills: number;
  /** Seconds over which idle CPU is measured. */
  idleSeconds: number;
  /** Parallel creates while filling up to a level. */
  createConcurrency: number;
}

interface ContainerView {
  id: string;
  status: string;
  pid: number;
}

/**
 * B3, B5 and B6 against one runcd whose runtime is a counting wrapper (workspace.countingRuntime), so the bench
 * sees from outside the daemon that reads spawn no runc while `?refresh=true` does.
 */
export async function benchScale(
  daemon: RuncdDaemon,
  bundle: string,
  runtimeInvocations: () => number,
  options: ScaleOptions,
): Promise<{ b3: Section; b5: Section; b6: Section }> {
  const samples = new Samples();
  const b3 = section('B3', "reads: runcd's view vs runc, ms (median / p95)", [
    'containers',
    'GET /containers/:id',
    'runc state',
    'GET /containers',
    'runc list',
    'runc spawned by the reads',
  ]);
  const b5 = section('B5', 'daemon memory and idle CPU', [
    'containers',
    'RSS MiB',
    'idle CPU % of a core',
    'RSS MiB after the idle window',
    'spawn helper RSS MiB',
  ]);
  const b6 = section('B6', 'exit-to-event and exit-to-read latency after `kill -9` on the host, ms', [
    'figure',
    'median',
    'p95',
    'runs',
  ]);

  await settle();
  const idleRss = daemon.rssBytes();
  const idleCpuNone = await idleCpu(daemon, options.idleSeconds);
  b5.rows.push([
    '0',
    mib(idleRss),
    percent(idleCpuNone),
    mib(daemon.rssBytes()),
    mib(daemon.helperRssBytes()),
  ]);

  const ids: string[] = [];
  for (const level of options.levels) {
    await fill(daemon, bundle, ids, level, options.createConcurrency);
    const before = runtimeInvocations();
    for (let index = 0; index < options.reads; index++) {
      const id = ids[index % ids.length]!;
      const [, duration] = await timed(() => daemon.expect('GET', `/containers/${id}`, 200));
      samples.add(`get.${level}`, duration);
    }
    for (let index = 0; index < options.lists; index++) {
      const [body, duration] = await timed(() => daemon.expect('GET', '/containers', 200));
      if (index === 0 && (JSON.parse(body) as unknown[]).length !== level) {
        throw new BenchError(
          `GET /containers listed ${(JSON.parse(body) as unknown[]).length}, expected ${level}`,
        );
      }
      samples.add(`list.${level}`, duration);
    }
    const spawnedByReads = runtimeInvocations() - before;
    // The counter must move for a read that does ask runc, or "0" above would prove nothing.
    await daemon.expect('GET', `/containers/${ids[0]}?refresh=true`, 200);
    if (runtimeInvocations() === before + spawnedByReads) {
      throw new BenchError('GET ?refresh=true spawned no runc: the invocation counter does not work');
    }
    for (let index = 0; index < Math.max(5, Math.round(options.reads / 10)); index++) {
      const id = ids[index % ids.length]!;
      const [, duration] = await timed(() =>
        execFileAsync(RUNC, [`--root=${daemon.runtimeRoot}`, 'state', id]),
      );
      samples.add(`state.${level}`, duration);
    }
    for (let index = 0; index < Math.max(3, Math.round(options.lists / 5)); index++) {
      const [, duration] = await timed(() =>
        execFileAsync(RUNC, [`--root=${daemon.runtimeRoot}`, 'list', '--format', 'json'], {
          maxBuffer: 64 * 1024 * 1024,
        }),
      );
      samples.add(`runclist.${level}`, duration);
    }
    const cell = (name: string) => {
      const summary = samples.summary(name);
      b3.data[name] = summary;
      return `${ms(summary.median)} / ${ms(summary.p95)}`;
    };
    b3.data[`spawnedByReads.${level}`] = spawnedByReads;
    b3.rows.push([
      String(level),
      cell(`get.${level}`),
      cell(`state.${level}`),
      cell(`list.${level}`),
      cell(`runclist.${level}`),
      String(spawnedByReads),
    ]);
    if (spawnedByReads !== 0)
      b3.notes.push(`**${spawnedByReads} runc processes spawned by reads at ${level}**`);
    if (level === options.levels.at(-1)) {
      await settle();
      const rss = daemon.rssBytes();
      const cpu = await idleCpu(daemon, options.idleSeconds);
      const rssAtRest = daemon.rssBytes();
      b5.rows.push([String(level), mib(rss), percent(cpu), mib(rssAtRest), mib(daemon.helperRssBytes())]);
      b5.data.rssAtRestWithContainers = rssAtRest;
      b5.notes.push(
        `RSS is read 2 s after the last request (the target is judged on it), then again after the ${options.idleSeconds} s idle-CPU window. The spawn helper (a separate process that forks runc and conmon) is shown on its own: the target is the daemon's.`,
      );
      b5.data.rssWithContainers = rss;
      b5.data.idleCpuWithContainers = cpu;
      b5.data.containers = level;
      b5.targets.push(
        {
          name: `RSS with ${level} containers`,
          figure: `${mib(rss)} MiB`,
          bound: '<= 100 MiB',
          met: rss <= 100 * 2 ** 20,
        },
        {
          name: `idle CPU with ${level} containers`,
          figure: `${percent(cpu)} %`,
          bound: '< 1 %',
          met: cpu < 0.01,
        },
      );
    }
  }
  const largest = options.levels.at(-1)!;
  const get = samples.summary(`get.${largest}`);
  const list = samples.summary(`list.${largest}`);
  b3.targets.push(
    {
      name: 'GET /containers/:id p50',
      figure: `${ms(get.median)} ms`,
      bound: '<= 1 ms',
      met: get.median <= 1,
    },
    {
      name: `GET /containers p50 with ${largest} containers`,
      figure: `${ms(list.median)} ms`,
      bound: largest >= 1000 ? '<= 15 ms' : '<= 15 ms (at 1000)',
      met: list.median <= 15,
    },
    {
      name: 'reads spawn no runc',
      figure: String(
        options.levels.reduce((sum, level) => sum + Number(b3.data[`spawnedByReads.${level}`]), 0),
      ),
      bound: '0',
      met: options.levels.every((level) => b3.data[`spawnedByReads.${level}`] === 0),
    },
  );
  b3.notes.push(
    `runc state and runc list run against runcd's own runc root, with the same containers; each read is one request on a keep-alive connection.`,
    `"runc spawned by the reads" counts runtime invocations through a wrapper passed as --runtime, across all the GETs of that row; one GET ?refresh=true afterwards must (and did) move the counter.`,
  );

  await hostKills(daemon, ids, options.kills, samples);
  const readAfterKill = samples.summary('killToRead');
  const dieEvent = samples.summary('killToEvent');
  b6.rows.push(
    [
      'kill -9 → GET /containers/:id reads stopped',
      ms(readAfterKill.median),
      ms(readAfterKill.p95),
      String(readAfterKill.n),
    ],
    ['kill -9 → `die` event on GET /events', ms(dieEvent.median), ms(dieEvent.p95), String(dieEvent.n)],
  );
  b6.data.killToRead = readAfterKill;
  b6.data.killToEvent = dieEvent;
  b6.notes.push(
    `Each run kills one container's init with SIGKILL from the bench process (not through runcd); the read figure polls GET /containers/:id back to back until it says stopped, the event figure waits for the die event on an open GET /events stream. One container at a time, taken from the ${largest} running ones.`,
  );
  b3.targets.push({
    name: 'container killed behind runcd reads stopped (p95)',
    figure: `${ms(readAfterKill.p95)} ms`,
    bound: '<= 100 ms',
    met: readAfterKill.p95 <= 100,
  });
  b6.targets.push({
    name: 'exit-to-event p95',
    figure: `${ms(dieEvent.p95)} ms`,
    bound: '<= 100 ms',
    met: dieEvent.p95 <= 100,
  });

  await removeAll(daemon, ids, options.createConcurrency);
  return { b3, b5, b6 };
}

/** Creates and starts containers until `ids` holds `level` of them. */
async function fill(daemon: RuncdDaemon, bundle: string, ids: string[], level: number, concurrency: number) {
  const wanted = Array.from({ length: level - ids.length }, (_, index) => `scale-${ids.length + index}`);
  await parallel(wanted, concurrency, async (id) => {
    await daemon.expect('POST', '/containers', 201, { id, bundle, start: true });
    ids.push(id);
  });
}

async function removeAll(daemon: RuncdDaemon, ids: string[], concurrency: number): Promise<void> {
  await parallel(ids.splice(0), concurrency, (id) =>
    daemon.expect('DELETE', `/containers/${id}?force=true`, 204),
  );
}

async function hostKills(daemon: RuncdDaemon, ids: string[], kills: number, samples: Samples): Promise<void> {
  const dies = new Map<string, (at: number) => void>();
  const close = await daemon.subscribe((event, receivedAt) => {
    if (event.type === 'die') dies.get(event.id)?.(receivedAt);
  });
  try {
    for (let index = 0; index < kills * 2; index++) {
      const id = ids[ids.length - 1 - index];
      if (!id) throw new BenchError(`not enough containers for ${kills} host kills of each kind`);
      const container = JSON.parse(await daemon.expect('GET', `/containers/${id}`, 200)) as ContainerView;
      if (container.status !== 'running')
        throw new BenchError(`${id} is ${container.status}, expected running`);
      const died = new Promise<number>((resolve) => dies.set(id, resolve));
      const killedAt = performance.now();
      process.kill(container.pid, 'SIGKILL');
      if (index % 2 === 0) {
        samples.add('killToEvent', (await withDeadline(died, 10_000, `die event of ${id}`)) - killedAt);
      } else {
        for (;;) {
          const view = JSON.parse(await daemon.expect('GET', `/containers/${id}`, 200)) as ContainerView;
          if (view.status === 'stopped') break;
          if (performance.now() - killedAt > 10_000) throw new BenchError(`${id} never read as stopped`);
        }
        samples.add('killToRead', performance.now() - killedAt);
        await died;
      }
      dies.delete(id);
    }
  } finally {
    close();
  }
}

/** Runs `work` over `items` with at most `concurrency` in flight; the first failure rejects (after the rest settle). */
export async function parallel<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<unknown>,
) {
  let next = 0;
  const errors: unknown[] = [];
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const item = items[next++]!;
        await work(item).catch((error: unknown) => errors.push(error));
      }
    }),
  );
  if (errors.length > 0) throw errors[0];
}

/** CPU used by the daemon over `seconds` with no request in flight, as a fraction of one core. */
async function idleCpu(daemon: RuncdDaemon, seconds: number): Promise<number> {
  const before = daemon.cpuSeconds();
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  return (daemon.cpuSeconds() - before) / ((performance.now() - started) / 1000);
}

/** Lets garbage collection and deferred work after a burst of requests finish before measuring. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 2000));
}

async function withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new BenchError(`${what} did not arrive within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const percent = (fraction: number) => (fraction * 100).toFixed(2);
