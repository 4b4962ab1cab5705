/** Latency samples and their summary: every figure the harness reports is a median and a p95 over repeats. */

export interface Summary {
  n: number;
  median: number;
  p95: number;
  min: number;
  max: number;
}

export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { n: 0, median: NaN, p95: NaN, min: NaN, max: NaN };
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    median: percentile(sorted, 0.5),
    p95: percentile(sorted, 0.95),
    min: sorted[0]!,
    max: sorted.at(-1)!,
  };
}

/** The q-quantile (0.5 the median, 0.99 the p99) of unsorted samples; NaN for none. */
export function quantile(samples: readonly number[], q: number): number {
  if (samples.length === 0) return NaN;
  return percentile(
    [...samples].sort((a, b) => a - b),
    q,
  );
}

/** Linear interpolation between the closest ranks (the same definition numpy uses by default). */
function percentile(sorted: readonly number[], q: number): number {
  const rank = (sorted.length - 1) * q;
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (rank - low);
}

/** Named sample series, filled while a scenario runs. */
export class Samples {
  private readonly series = new Map<string, number[]>();

  add(name: string, value: number): void {
    const list = this.series.get(name) ?? [];
    list.push(value);
    this.series.set(name, list);
  }

  get(name: string): number[] {
    return this.series.get(name) ?? [];
  }

  summary(name: string): Summary {
    return summarize(this.get(name));
  }

  names(): string[] {
    return [...this.series.keys()];
  }
}

/** Times one async step in milliseconds. */
export async function timed<T>(step: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await step();
  return [value, performance.now() - started];
}

export function ms(value: number, digits = value < 10 ? 2 : 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a';
}

export function ratio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}x` : 'n/a';
}

export function markdownTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}
