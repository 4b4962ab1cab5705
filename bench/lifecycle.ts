import { runLifecycle, untilHandlesSigterm, type LifecycleDriver } from './drivers.js';
import { section, type Section } from './report.js';
import { RAW_WAIT_POLL_MS } from './runc-driver.js';
import { ms, ratio, Samples, timed } from './stats.js';

export interface LifecycleOptions {
  iterations: number;
  warmup: number;
}

/**
 * B1 and B2. Each iteration runs one full lifecycle per front end, rotating who goes first, so drift in the
 * machine's load (other work on a shared VM) hits every front end alike. The per-step times of those lifecycles
 * are B2's create/start/state/exec/kill/delete; list and stop come from a second interleaved loop.
 */
export async function benchLifecycle(
  drivers: readonly LifecycleDriver[],
  options: LifecycleOptions,
): Promise<{ b1: Section; b2: Section }> {
  const samples = new Samples();
  for (let round = 0; round < options.warmup; round++) {
    for (const driver of drivers) await runLifecycle(driver, `warm-${driver.name}-${round}`);
  }
  for (let iteration = 0; iteration < options.iterations; iteration++) {
    for (const driver of rotate(drivers, iteration)) {
      const total = await runLifecycle(driver, `b1-${driver.name}-${iteration}`, (step, duration) =>
        samples.add(`${driver.name}.${step}`, duration),
      );
      samples.add(`${driver.name}.total`, total);
    }
  }
  for (let iteration = 0; iteration < options.iterations; iteration++) {
    for (const driver of rotate(drivers, iteration)) {
      const id = `b2-${driver.name}-${iteration}`;
      await driver.create(id, 'graceful');
      await driver.start(id);
      await untilHandlesSigterm(await driver.pid(id));
      const [count, listMs] = await timed(() => driver.list());
      if (count !== 1) throw new Error(`${driver.name}: list showed ${count} containers, expected 1`);
      samples.add(`${driver.name}.list`, listMs);
      const [, stopMs] = await timed(() => driver.stop(id));
      const exitCode = await driver.waitStopped(id);
      if (exitCode !== null && exitCode !== 0) {
        throw new Error(`${driver.name}: ${id} stopped with ${exitCode}, expected a graceful 0`);
      }
      samples.add(`${driver.name}.stop`, stopMs);
      await driver.delete(id);
    }
  }
  return { b1: lifecycleSection(drivers, samples), b2: operationsSection(drivers, samples) };
}

function lifecycleSection(drivers: readonly LifecycleDriver[], samples: Samples): Section {
  const result = section('B1', 'full lifecycle (create, start, state, exec, kill, wait stopped, delete)', [
    'front end',
    'median ms',
    'p95 ms',
    'runs',
    'median vs runc CLI',
  ]);
  const runc = samples.summary('runc.total');
  for (const driver of drivers) {
    const total = samples.summary(`${driver.name}.total`);
    result.data[driver.name] = total;
    result.rows.push([
      driver.name,
      ms(total.median),
      ms(total.p95),
      String(total.n),
      ratio(total.median / runc.median),
    ]);
  }
  const runcd = samples.summary('runcd.total');
  const paired = samples.get('runcd.total').map((value, index) => value / samples.get('runc.total')[index]!);
  const pairedSorted = [...paired].sort((a, b) => a - b);
  const pairedMedian = pairedSorted[Math.floor(pairedSorted.length / 2)] ?? NaN;
  result.data.ratioOfMedians = runcd.median / runc.median;
  result.data.medianOfPairedRatios = pairedMedian;
  result.notes.push(
    `runcd / runc CLI: ${ratio(runcd.median / runc.median)} (ratio of medians); ${ratio(pairedMedian)} (median of the per-iteration ratios)`,
  );
  result.targets.push({
    name: 'runcd / runc CLI, full lifecycle',
    figure: ratio(runcd.median / runc.median),
    bound: '<= 1.10x',
    met: runcd.median / runc.median <= 1.1,
  });
  const baseline = samples.get('runcd-baseline.total');
  if (baseline.length > 0) {
    const change = runcd.median / samples.summary('runcd-baseline.total').median;
    result.data.runcdOverBaseline = change;
    result.notes.push(`runcd / runcd-baseline: ${ratio(change)}`);
  }
  const podman = samples.get('podman.total');
  if (podman.length > 0) {
    const speedup = samples.summary('podman.total').median / runcd.median;
    result.data.podmanOverRuncd = speedup;
    result.notes.push(`Podman REST / runcd: ${ratio(speedup)}`);
    result.targets.push({
      name: 'runcd faster than Podman REST',
      figure: ratio(speedup),
      bound: '>= 5x',
      met: speedup >= 5,
    });
  }
  return result;
}

const OPERATIONS = ['create', 'start', 'state', 'list', 'exec', 'kill', 'wait', 'stop', 'delete'] as const;

function operationsSection(drivers: readonly LifecycleDriver[], samples: Samples): Section {
  const names = drivers.map((driver) => driver.name);
  const result = section('B2', 'per-operation latency, ms (median / p95)', [
    'operation',
    ...names,
    ...(names.includes('runc')
      ? names.filter((name) => name !== 'runc').map((name) => `${name} - runc (median)`)
      : []),
  ]);
  for (const operation of OPERATIONS) {
    const row: string[] = [operation];
    const medians: Record<string, number> = {};
    for (const name of names) {
      const summary = samples.summary(`${name}.${operation}`);
      result.data[`${name}.${operation}`] = summary;
      medians[name] = summary.median;
      row.push(`${ms(summary.median)} / ${ms(summary.p95)}`);
    }
    if (names.includes('runc')) {
      for (const name of names.filter((entry) => entry !== 'runc'))
        row.push(ms(medians[name]! - medians.runc!));
    }
    result.rows.push(row);
  }
  result.notes.push(
    `create, start, state, exec, kill, wait and delete are the steps of B1's lifecycles; list (one container) and stop (SIGTERM to an init that exits 0 on it, then wait) come from a second interleaved loop.`,
    `runcd's kill with SIGKILL answers once the exit is recorded, so its "wait" is only the answer from its view; the runc CLI's kill returns at once and its "wait" polls /proc every ${RAW_WAIT_POLL_MS} ms. Compare kill + wait.`,
  );
  return result;
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const shift = by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}
