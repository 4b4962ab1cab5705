import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { splitExecArgs } from '../../src/cli/runcctl/commands.js';
import { formatTable, RUNC_LIST_HEADER } from '../../src/cli/runcctl/table.js';
import { REPO_ROOT } from '../helpers/sandbox.js';

t.test("list prints runc's own table (Go tabwriter: minwidth 12, padding 3)", async (t) => {
  // Captured from `runc list` (runc 1.1.5) for the same containers.
  const runcOutput = [
    'ID          PID         STATUS      BUNDLE          CREATED                         OWNER',
    'c1          19572       created     /tmp/ops-rc/b   2026-11-29T02:06:38.65763717Z   root',
    '',
  ].join('\n');
  t.equal(
    formatTable([
      RUNC_LIST_HEADER,
      ['c1', '19572', 'created', '/tmp/ops-rc/b', '2026-11-29T02:06:38.65763717Z', 'root'],
    ]),
    runcOutput,
  );
  t.equal(
    formatTable([RUNC_LIST_HEADER]),
    'ID          PID         STATUS      BUNDLE      CREATED     OWNER\n',
  );
});

t.test('exec options end where the command begins, with or without --', async (t) => {
  t.same(splitExecArgs(['c1', '--', 'ls', '-la']), { options: ['c1'], command: ['ls', '-la'] });
  t.same(splitExecArgs(['c1', 'ls', '-la']), { options: ['c1'], command: ['ls', '-la'] }, "runc's own form");
  t.same(splitExecArgs(['-e', 'A=1', '--cwd', '/tmp', 'c1', 'sh', '-c', 'echo $A']), {
    options: ['-e', 'A=1', '--cwd', '/tmp', 'c1'],
    command: ['sh', '-c', 'echo $A'],
  });
  t.same(splitExecArgs(['c1']), { options: ['c1'], command: [] });
});

t.test("a change to the contract that runcctl's calls no longer fit breaks the build", async (t) => {
  // runcctl's sources compiled against types generated from a spec: the committed one, then one where the kill
  // operation lost its signal parameter and the container's status field was renamed.
  // Inside the repository, so the copy resolves the repository's node_modules.
  mkdirSync(join(REPO_ROOT, '.tap'), { recursive: true });
  const work = mkdtempSync(join(REPO_ROOT, '.tap', 'contract-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  mkdirSync(join(work, 'src', 'cli', 'generated'), { recursive: true });
  cpSync(join(REPO_ROOT, 'src', 'cli', 'runcctl'), join(work, 'src', 'cli', 'runcctl'), { recursive: true });
  cpSync(join(REPO_ROOT, 'src', 'version.ts'), join(work, 'src', 'version.ts'));
  writeFileSync(
    join(work, 'tsconfig.json'),
    JSON.stringify({
      extends: join(REPO_ROOT, 'tsconfig.json'),
      compilerOptions: { noEmit: true, rootDir: work },
      include: [join(work, 'src')],
    }),
  );
  const spec = JSON.parse(readFileSync(join(REPO_ROOT, 'openapi', 'openapi.json'), 'utf8')) as {
    paths: Record<string, Record<string, { parameters?: Array<{ name: string }> }>>;
    components: { schemas: Record<string, { properties: Record<string, unknown>; required: string[] }> };
  };
  const compileAgainst = (document: unknown) => {
    writeFileSync(join(work, 'openapi.json'), JSON.stringify(document));
    const bin = (name: string) => join(REPO_ROOT, 'node_modules', '.bin', name);
    const generate = spawnSync(
      bin('openapi-typescript'),
      [join(work, 'openapi.json'), '--output', join(work, 'src', 'cli', 'generated', 'runcd-api.ts')],
      { encoding: 'utf8' },
    );
    if (generate.status !== 0) throw new Error(generate.stderr);
    return spawnSync(bin('tsc'), ['-p', join(work, 'tsconfig.json')], { encoding: 'utf8' });
  };

  const unchanged = compileAgainst(spec);
  t.equal(unchanged.status, 0, `compiles against the committed spec ${unchanged.stdout}`);

  const kill = spec.paths['/containers/{id}/kill']!.post!;
  kill.parameters = kill.parameters!.filter((parameter) => parameter.name !== 'signal');
  const container = spec.components.schemas.Container!;
  container.properties.state = container.properties.status;
  delete container.properties.status;
  container.required = container.required.map((name) => (name === 'status' ? 'state' : name));
  const changed = compileAgainst(spec);
  t.not(changed.status, 0, 'fails against the changed one');
  t.match(changed.stdout, /commands\.ts.*signal/, 'naming the call that no longer fits');
  t.match(changed.stdout, /commands\.ts.*'status'/, 'and the field that is gone');
});
