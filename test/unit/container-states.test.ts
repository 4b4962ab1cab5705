import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ConflictError } from '../../src/errors.js';
import {
  assertAllowed,
  IllegalTransitionError,
  isLegalTransition,
  OPERATION_RULES,
  OPERATIONS,
  refusalOf,
  renderStateTables,
  setStatus,
  STATUSES,
  TRANSITIONS,
} from '../../src/lifecycle/container-states.js';
import type { ContainerStatus } from '../../src/schemas/container.js';

/** test/unit (or dist/test/unit) → the repository root, where README.md and src/ are. */
const REPO_ROOT = resolve(
  fileURLToPath(new URL('.', import.meta.url)),
  '..',
  '..',
  ...(import.meta.url.includes('/dist/') ? ['..'] : []),
);

function thrownBy(run: () => void): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  return undefined;
}

/** prettier pads markdown tables; the comparison is of the cells. */
const cellsOf = (table: string) =>
  table
    .trim()
    .split('\n')
    .map((line) => line.split('|').map((cell) => cell.trim().replace(/^-+$/, '---')));

t.test('every operation in every status is allowed or refused with a code and a message', async (t) => {
  for (const operation of OPERATIONS) {
    for (const status of STATUSES) {
      const rule = OPERATION_RULES[operation][status];
      t.ok(rule !== undefined, `${operation} in ${status} has a rule`);
      const refusal = refusalOf(operation, status);
      if (!refusal) {
        t.doesNotThrow(() => assertAllowed(operation, { id: 'c1', status }), `${operation} in ${status}`);
        continue;
      }
      t.match(refusal.code, /^container_[a-z_]+$/, `${operation} in ${status}: a container_* code`);
      t.ok(refusal.message('c1').length > 10, `${operation} in ${status}: a message`);
      const error = thrownBy(() => assertAllowed(operation, { id: 'c1', status }));
      t.ok(error instanceof ConflictError, `${operation} in ${status} is a conflict`);
      t.equal((error as ConflictError).code, refusal.code, `${operation} in ${status}: ${refusal.code}`);
    }
  }
});

t.test('the refusals callers already rely on keep their codes and words', async (t) => {
  const expect: Array<[(typeof OPERATIONS)[number], ContainerStatus, string, string]> = [
    ['start', 'running', 'container_already_running', 'cannot start an already running container'],
    ['start', 'creating', 'container_not_created', 'container "c1" is still being created'],
    ['exec', 'stopped', 'container_stopped', 'cannot exec into a stopped container'],
    ['exec', 'paused', 'container_paused', 'cannot exec into a paused container: resume it first'],
    ['kill', 'stopped', 'container_not_running', 'container "c1" is not running'],
    ['delete', 'running', 'container_not_stopped', 'cannot delete container that is not stopped: running'],
    ['pause', 'stopped', 'container_not_running', 'cannot pause a container that is stopped'],
    ['resume', 'running', 'container_not_paused', 'cannot resume a container that is running'],
  ];
  for (const [operation, status, code, message] of expect) {
    const refusal = refusalOf(operation, status);
    t.equal(refusal?.code, code, `${operation} in ${status}`);
    t.equal(refusal?.message('c1'), message, `${operation} in ${status}`);
  }
});

t.test('a created container is deleted without force, as runc delete does', async (t) => {
  t.equal(refusalOf('delete', 'created'), undefined);
  t.equal(refusalOf('delete', 'stopped'), undefined);
});

t.test(
  'a creating container is refused as still being created by every operation that refuses it',
  async (t) => {
    for (const operation of OPERATIONS) {
      const refusal = refusalOf(operation, 'creating');
      if (refusal) t.equal(refusal.message('c1'), 'container "c1" is still being created', operation);
    }
  },
);

t.test('every status change is either listed legal or refused by the one writer', async (t) => {
  for (const from of STATUSES) {
    for (const to of STATUSES) {
      const record = { id: 'c1', status: from as ContainerStatus };
      if (from === to || isLegalTransition(from, to)) {
        setStatus(record, to);
        t.equal(record.status, to, `${from} → ${to}`);
      } else {
        const error = thrownBy(() => setStatus(record, to));
        t.ok(error instanceof IllegalTransitionError, `${from} → ${to} is refused`);
        t.match((error as Error).message, `${from} → ${to}`, 'the error names both statuses');
        t.equal(record.status, from, `${from} → ${to} leaves the status as it was`);
      }
    }
  }
  t.ok(isLegalTransition('running', 'paused') && isLegalTransition('paused', 'running'));
  t.notOk(isLegalTransition('stopped', 'running'), 'a stopped container runs again only through creating');
  t.notOk(isLegalTransition('running', 'created'));
  t.equal(
    new Set(TRANSITIONS.map(({ from, to }) => `${from}>${to}`)).size,
    TRANSITIONS.length,
    'no duplicates',
  );
});

t.test("the README's state tables are the ones in the code", async (t) => {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = /<!-- state-table:begin[^>]*-->\n([\s\S]*?)\n<!-- state-table:end -->/.exec(readme);
  t.ok(section, 'README has the state-table markers');
  t.same(
    cellsOf(section?.[1] ?? ''),
    cellsOf(renderStateTables()),
    'regenerate with renderStateTables() (see the marker comment)',
  );
});

t.test('setStatus is the only writer of a container status in src/', async (t) => {
  const writers: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (path.endsWith('.ts') && !path.endsWith('container-states.ts')) {
        const text = readFileSync(path, 'utf8');
        if (/\brecord\.status\s*=[^=]|\bcurrent\.status\s*=[^=]/.test(text)) writers.push(path);
      }
    }
  };
  walk(join(REPO_ROOT, 'src'));
  t.same(writers, [], 'no file writes record.status itself');
});
