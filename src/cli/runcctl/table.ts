/**
 * runc's `list` table, cell for cell: runc writes it through Go's text/tabwriter with minwidth 12, tabwidth 1,
 * padding 3 and spaces, so each column is as wide as its widest cell plus 3, and at least 12; the last column is
 * not padded.
 */

const MIN_WIDTH = 12;
const PADDING = 3;

export const RUNC_LIST_HEADER = ['ID', 'PID', 'STATUS', 'BUNDLE', 'CREATED', 'OWNER'] as const;

export function formatTable(rows: ReadonlyArray<readonly string[]>): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.slice(0, -1).forEach((cell, column) => {
      widths[column] = Math.max(widths[column] ?? MIN_WIDTH, cell.length + PADDING);
    });
  }
  return rows
    .map((row) =>
      row.map((cell, column) => (column < row.length - 1 ? cell.padEnd(widths[column]!) : cell)).join(''),
    )
    .map((line) => `${line}\n`)
    .join('');
}
