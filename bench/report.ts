import { markdownTable, type Summary } from './stats.js';

/** One target of issue 6, checked against a figure of this run. */
export interface TargetCheck {
  name: string;
  figure: string;
  bound: string;
  met: boolean;
}

/** One benchmark (B1..B6): a table for people, the raw summaries for the JSON file, and its targets. */
export interface Section {
  id: string;
  title: string;
  notes: string[];
  header: string[];
  rows: string[][];
  data: Record<string, Summary | number | string | boolean | null | Record<string, unknown>>;
  targets: TargetCheck[];
}

export function section(id: string, title: string, header: string[]): Section {
  return { id, title, notes: [], header, rows: [], data: {}, targets: [] };
}

export function renderMarkdown(sections: readonly Section[], preamble: string[]): string {
  const out: string[] = [...preamble, ''];
  for (const entry of sections) {
    out.push(`### ${entry.id}: ${entry.title}`, '');
    if (entry.rows.length > 0) out.push(markdownTable(entry.header, entry.rows), '');
    for (const note of entry.notes) out.push(`- ${note}`);
    if (entry.notes.length > 0) out.push('');
  }
  const targets = sections.flatMap((entry) => entry.targets.map((target) => ({ ...target, id: entry.id })));
  if (targets.length > 0) {
    out.push('### Targets', '');
    out.push(
      markdownTable(
        ['', 'target', 'figure', 'bound', 'met'],
        targets.map((target) => [
          target.id,
          target.name,
          target.figure,
          target.bound,
          target.met ? 'yes' : '**no**',
        ]),
      ),
      '',
    );
  }
  return out.join('\n');
}
