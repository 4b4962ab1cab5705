import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ERROR_TABLE_END, ERROR_TABLE_START, renderErrorTable } from '../../src/docs/error-table.js';
import { ERROR_CATALOG, isErrorCode, statusOf } from '../../src/error-catalog.js';
import { REPO_ROOT } from '../helpers/sandbox.js';

const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');

t.test("the README's list of every error code is the catalog's", async (t) => {
  const start = readme.indexOf(ERROR_TABLE_START);
  const end = readme.indexOf(ERROR_TABLE_END);
  t.ok(start >= 0 && end > start, 'the README has the generated section');
  const section = readme.slice(start + ERROR_TABLE_START.length, end).trim();
  // prettier pads markdown tables: compare cell by cell, not byte by byte.
  const cells = (table: string) =>
    table
      .split('\n')
      .filter((line) => !/^\|[\s|:-]+\|$/.test(line))
      .map((line) => line.split('|').map((cell) => cell.trim()));
  t.same(
    cells(section),
    cells(renderErrorTable()),
    'regenerate with: node dist/src/docs/print-error-table.js',
  );
});

t.test("every code and status in the README's situation table is the catalog's", async (t) => {
  const table = readme.slice(readme.indexOf('| situation'), readme.indexOf('## Configuration'));
  let rows = 0;
  for (const line of table.split('\n').slice(2)) {
    const [, , statusCell, codeCell] = line.split('|').map((cell) => cell.trim());
    if (!statusCell || !codeCell) continue;
    rows++;
    const statuses = statusCell.split('/').map(Number);
    for (const code of codeCell.match(/`[a-z_]+`/g) ?? []) {
      const name = code.slice(1, -1);
      t.ok(isErrorCode(name), `${name} is in the catalog`);
      if (isErrorCode(name)) t.ok(statuses.includes(statusOf(name).status), `${name}: ${statusCell}`);
    }
  }
  t.ok(rows > 20, `${rows} rows read`);
});

t.test('every problem example in the OpenAPI document is a catalog code with its status', async (t) => {
  const spec = JSON.parse(readFileSync(join(REPO_ROOT, 'openapi', 'openapi.json'), 'utf8')) as unknown;
  const examples: Array<{ code: string; status: number }> = [];
  const walk = (node: unknown) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === 'object') {
      const record = node as Record<string, unknown>;
      if (typeof record.code === 'string' && typeof record.status === 'number' && 'type' in record) {
        examples.push({ code: record.code, status: record.status });
      }
      Object.values(record).forEach(walk);
    }
  };
  walk(spec);
  t.ok(examples.length > 20, `${examples.length} problem examples`);
  for (const { code, status } of examples) {
    t.ok(isErrorCode(code), `${code} is in the catalog`);
    if (isErrorCode(code) && code !== 'malformed_request') t.equal(status, statusOf(code).status, code);
  }
});

t.test('every code has a description of one line', async (t) => {
  for (const [code, entry] of Object.entries(ERROR_CATALOG)) {
    t.match(entry.description, /^[^\n]{10,120}$/, code);
  }
});
