import { runLifecycle, type LifecycleDriver } from './drivers.js';
import { section, type Section } from './report.js';
import { ms, ratio, Samples } from './stats.js';

export interface ThroughputOptions {
  /** Full lifecycles per round. */
  lifecycles: number;
  /** Concurrent clients, each running one lifecycle after another. */
  clients: number;
  /** Rounds per front end, alternating which goes first. */
  rounds: number;
}

export interface ThroughputSubject {
  driver: LifecycleDriver;
  /** Whatever the front end still holds after a round: must be empty. */
  leftovers: () => Promise<string[]>;
}

/** B4: a fixed number of full lifecycles by N concurrent clients, per front end, with errors and leftovers. */
export async function benchThroughput(
  subjects: readonly ThroughputSubject[],
  options: ThroughputOptions,
): Promise<{ section: Section; errors: string[]; leftovers: string[] }> {
  const samples = new Samples();
  const errors: string[] = [];
  const leftovers: string[] = [];
  const errorCounts = new Map<string, number>();
  for (let round = 0; round < options.rounds; round++) {
    const order = round % 2 === 0 ? subjects : [...subjects].reverse();
    for (const { driver, leftovers: leftoversOf } of order) {
      let next = 0;
      let failed = 0;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: options.clients }, async () => {
          while (next < options.lifecycles) {
            const id = `b4-${driver.name}-${round}-${next++}`;
            try {
              samples.add(`${driver.name}.latency`, await runLifecycle(driver, id));
            } catch (error) {
              failed++;
              errors.push(`B4 ${driver.name} ${id}: ${(error as Error).message}`);
              await driver.remove(id).catch(() => undefined);
            }
          }
        }),
      );
      const elapsedSeconds = (performance.now() - started) / 1000;
      samples.add(`${driver.name}.throughput`, options.lifecycles / elapsedSeconds);
      errorCounts.set(driver.name, (errorCounts.get(driver.name) ?? 0) + failed);
      for (const leftover of await leftoversOf())
        leftovers.push(`B4 ${driver.name} round ${round}: ${leftover}`);
    }
  }
  const result = section(
    'B4',
    `throughput: ${options.clients} concurrent clients, ${options.lifecycles} full lifecycles per round, ${options.rounds} rounds`,
    [
      'front end',
      'lifecycles/s (median)',
      'lifecycles/s (min)',
      'lifecycle ms (median / p95)',
      'errors',
      'leftovers',
    ],
  );
  for (const { driver } of subjects) {
    const throughput = samples.summary(`${driver.name}.throughput`);
    const latency = samples.summary(`${driver.name}.latency`);
    const left = leftovers.filter((entry) => entry.startsWith(`B4 ${driver.name} `)).length;
    result.data[driver.name] = {
      throughput,
      latency,
      errors: errorCounts.get(driver.name) ?? 0,
      leftovers: left,
    };
    result.rows.push([
      driver.name,
      throughput.median.toFixed(1),
      throughput.min.toFixed(1),
      `${ms(latency.median)} / ${ms(latency.p95)}`,
      String(errorCounts.get(driver.name) ?? 0),
      String(left),
    ]);
  }
  const runcd = samples.summary('runcd.throughput').median;
  const runc = samples.summary('runc.throughput').median;
  result.data.runcdOverRunc = runcd / runc;
  result.notes.push(`runcd / runc CLI throughput: ${ratio(runcd / runc)}`);
  result.targets.push(
    {
      name: 'throughput vs runc CLI',
      figure: ratio(runcd / runc),
      bound: '>= 1.0x',
      met: runcd / runc >= 1.0,
    },
    { name: 'errors', figure: String(errors.length), bound: '0', met: errors.length === 0 },
    { name: 'leftovers', figure: String(leftovers.length), bound: '0', met: leftovers.length === 0 },
  );
  return { section: result, errors, leftovers };
}
