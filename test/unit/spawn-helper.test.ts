import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { NATIVE_HELPER_PATH } from '../../src/runtime/native-spawn-helper.js';
import { ProcessRunner } from '../../src/runtime/process-runner.js';
import { AnswerDecoder, encodeRun, type NativeAnswer } from '../../src/runtime/spawn-helper-protocol.js';
import { SpawnHelper, type HelperRequest } from '../../src/runtime/spawn-helper.js';
import { eventually } from '../helpers/sandbox.js';

const KINDS = ['native', 'node'] as const;
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Gone, or a zombie nobody has reaped yet: either way it runs no more. */
function isDead(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return true;
  }
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function helperOf(t: Test, kind: (typeof KINDS)[number]): SpawnHelper {
  const helper = new SpawnHelper(kind === 'native' ? {} : { nativeBinary: false });
  t.teardown(() => helper.close());
  return helper;
}

function request(fields: Partial<Omit<HelperRequest, 'type' | 'id'>> & { argv: string[] }) {
  return { binary: '/bin/sh', env: { PATH }, timeoutMs: 10_000, outputLimitBytes: 1 << 20, ...fields };
}

function scratch(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'runcd-spawn-helper-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('the compiled helper was built and is the one runcd forks through', async (t) => {
  t.ok(existsSync(NATIVE_HELPER_PATH), `${NATIVE_HELPER_PATH} exists (npm run build compiles it)`);
  const helper = helperOf(t, 'native');
  const result = await helper.run(request({ argv: ['-c', 'echo $PPID'] })).result;
  t.equal(helper.kind, 'native');
  t.equal(Number(result.stdout.trim()), helper.pid, "the command's parent is the helper");
  t.equal(readlinkSync(`/proc/${helper.pid}/exe`), NATIVE_HELPER_PATH, 'which is the compiled binary');
});

for (const kind of KINDS) {
  t.test(
    `${kind} helper: argv, the exact environment, cwd and the spawned pid come through as given`,
    async (t) => {
      const helper = helperOf(t, kind);
      const dir = scratch(t);
      let spawned = 0;
      const call = helper.run(
        request({ argv: ['-c', 'printf "%s|" "$@"; echo; pwd; echo $$', 'sh', 'a b', '', 'ünï'], cwd: dir }),
        (pid) => (spawned = pid),
      );
      const { stdout, exitCode, signal } = await call.result;
      t.match({ exitCode, signal }, { exitCode: 0, signal: null });
      t.equal(
        stdout,
        `a b||ünï|\n${dir}\n${spawned}\n`,
        'every argument (empty, non-ASCII), the cwd, the pid',
      );
      const environ = await helper.run(
        request({ binary: '/bin/cat', argv: ['/proc/self/environ'], env: { PATH, ONLY: 'this', EMPTY: '' } }),
      ).result;
      // tap's process tracker adds NODE_OPTIONS and _TAPJS_* to the Node helper's children; not the compiled one's.
      const entries = environ.stdout
        .split('\0')
        .filter((entry) => entry !== '' && !/^(NODE_OPTIONS|_TAPJS_)/.test(entry));
      t.same(entries.sort(), ['EMPTY=', 'ONLY=this', `PATH=${PATH}`], 'the environment and nothing else');

      const bare = await helper.run(request({ binary: 'sh', argv: ['-c', 'echo $0'] })).result;
      t.equal(bare.stdout, 'sh\n', "a bare name is looked up in the child's PATH and keeps its argv[0]");
      const missing = helper.run(request({ binary: '/nonexistent/binary', argv: [] })).result;
      await t.rejects(missing, { name: 'SpawnFailedError', message: /^spawn \/nonexistent\/binary ENOENT/ });
      const noCwd = helper.run(request({ argv: ['-c', 'true'], cwd: join(dir, 'missing') })).result;
      await t.rejects(noCwd, { name: 'SpawnFailedError', message: /ENOENT/ }, 'a missing cwd: nothing ran');
    },
  );

  t.test(`${kind} helper: input reaches stdin byte for byte, then stdin is closed`, async (t) => {
    const helper = helperOf(t, kind);
    // 3 MiB of multi-byte text: far beyond a pipe's buffer, so it is written as the child reads.
    const input = 'αβγ-json-{"x":1}\n'.repeat((3 * 1024 * 1024) / 20);
    const echoed = await helper.run(request({ binary: 'cat', argv: [], input, outputLimitBytes: 64 << 20 }))
      .result;
    t.equal(echoed.stdout.length, input.length);
    t.ok(echoed.stdout === input, 'cat gave back exactly what it was given');
    const closed = await helper.run(request({ argv: ['-c', 'cat; echo end'], input: '' })).result;
    t.equal(closed.stdout, 'end\n', 'an empty input is an immediate EOF');
    const none = await helper.run(request({ argv: ['-c', 'cat; echo end'] })).result;
    t.equal(none.stdout, 'end\n', 'no input: stdin is /dev/null');
    const unread = await helper.run(request({ argv: ['-c', 'exit 4'], input: 'x'.repeat(1 << 20) })).result;
    t.equal(unread.exitCode, 4, 'a child that never reads its input is no error of the helper');
  });

  t.test(`${kind} helper: each stream keeps its own limit, and ignoreStdout discards stdout`, async (t) => {
    const helper = helperOf(t, kind);
    const capped = await helper.run(
      request({
        argv: ['-c', 'head -c 100000 /dev/zero | tr "\\0" o; head -c 5000 /dev/zero | tr "\\0" e >&2'],
        outputLimitBytes: 1000,
      }),
    ).result;
    t.equal(capped.stdout, 'o'.repeat(1000), 'the first 1000 bytes of stdout');
    t.equal(capped.stderr, 'e'.repeat(1000), 'and of stderr');
    t.equal(capped.truncated, true);
    const exact = await helper.run(request({ argv: ['-c', 'printf 12345'], outputLimitBytes: 5 })).result;
    t.match(exact, { stdout: '12345', truncated: false }, 'output exactly at the limit is not truncated');
    const ignored = await helper.run(
      request({ argv: ['-c', 'echo out; echo err >&2; readlink /proc/self/fd/1'], ignoreStdout: true }),
    ).result;
    t.match(ignored, { stdout: '', stderr: 'err\n' });
  });

  t.test(
    `${kind} helper: a deadline SIGKILLs the group, a child that ignores SIGTERM included`,
    async (t) => {
      const helper = helperOf(t, kind);
      const result = await helper.run(
        request({
          argv: ['-c', 'trap "" TERM; sh -c \'trap "" TERM; sleep 300\' & echo $!; wait'],
          timeoutMs: 300,
        }),
      ).result;
      t.match(result, { timedOut: true, signal: 'SIGKILL', exitCode: null });
      const grandchild = Number(result.stdout.trim());
      t.ok(grandchild > 0, `grandchild pid ${grandchild}`);
      await eventually(async () => (isDead(grandchild) ? true : undefined));
      t.ok(isDead(grandchild), 'the grandchild died with its group');
      const signalled = await helper.run(request({ argv: ['-c', 'kill -TERM $$'] })).result;
      t.match(
        signalled,
        { exitCode: null, signal: 'SIGTERM', timedOut: false },
        'a signal is reported by name',
      );
    },
  );

  t.test(`${kind} helper: kill(id) SIGKILLs the group of a call in flight`, async (t) => {
    const helper = helperOf(t, kind);
    let pid = 0;
    const call = helper.run(
      request({ argv: ['-c', 'sleep 300'], timeoutMs: 0 }),
      (spawned) => (pid = spawned),
    );
    await eventually(async () => (pid ? true : undefined));
    helper.kill(call.id);
    t.match(await call.result, { signal: 'SIGKILL', timedOut: false });
  });

  t.test(`${kind} helper: fifoAsFd3 is the FIFO, read-write; endAtExit answers at the exit`, async (t) => {
    const helper = helperOf(t, kind);
    const dir = scratch(t);
    const fifo = join(dir, 'sync');
    spawnSync('mkfifo', [fifo]);
    // Held open for reading, as conmon.ts holds its sync FIFO, so what the child writes stays in it.
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    t.teardown(() => closeSync(reader));
    // The shell exits at once; its background child keeps stdout and stderr open for 300 s.
    const call = helper.run(
      request({
        argv: ['-c', 'ls -l /proc/self/fd/3 >&3; sleep 300 & echo $! >&3; echo bye >&2; exit 7'],
        fifoAsFd3: fifo,
        endAtExit: true,
        timeoutMs: 0,
      }),
    );
    const result = await call.result;
    t.match(result, { exitCode: 7, stderr: 'bye\n' }, 'the exit and what was written before it');
    const buffer = Buffer.alloc(4096);
    const written = buffer.subarray(0, readSync(reader, buffer)).toString('utf8').split('\n');
    t.match(
      written[0],
      /^lrwx------ .* \/proc\/self\/fd\/3 -> .*\/sync$/,
      'fd 3 is the FIFO, opened read-write',
    );
    const grandchild = Number(written[1]);
    t.notOk(isDead(grandchild), 'while the grandchild that holds the pipes runs on');
    killGroup(grandchild);
  });

  t.test(`${kind} helper: many calls in flight at once each get their own answer`, async (t) => {
    const helper = helperOf(t, kind);
    const calls = Array.from(
      { length: 60 },
      (_, i) =>
        helper.run(
          request({ argv: ['-c', `sleep 0.0$((${i} % 5)); echo ${i}; echo ${i} >&2; exit $((${i} % 7))`] }),
        ).result,
    );
    const results = await Promise.all(calls);
    t.same(
      results.map((result) => [result.stdout, result.stderr, result.exitCode]),
      results.map((_, i) => [`${i}\n`, `${i}\n`, i % 7]),
    );
  });
}

t.test('removal goes through the compiled helper and never follows a symlink out of the tree', async (t) => {
  const runner = new ProcessRunner();
  t.teardown(() => runner.close());
  const dir = scratch(t);
  const outside = join(dir, 'outside');
  mkdirSync(join(outside, 'keep'), { recursive: true });
  writeFileSync(join(outside, 'keep', 'file'), 'kept');
  writeFileSync(join(outside, 'single'), 'kept');
  const tree = join(dir, 'doomed');
  mkdirSync(join(tree, 'a', 'b', 'c'), { recursive: true });
  writeFileSync(join(tree, 'a', 'b', 'c', 'config.json'), '{}');
  writeFileSync(join(tree, 'log'), 'x'.repeat(100_000));
  symlinkSync(outside, join(tree, 'to-dir'));
  symlinkSync(join(outside, 'keep'), join(tree, 'a', 'b', 'to-keep'));
  symlinkSync(join(outside, 'single'), join(tree, 'a', 'to-file'));
  symlinkSync('/nonexistent', join(tree, 'dangling'));
  await runner.removeTree(tree);
  t.equal(runner.spawnHelperKind, 'native');
  t.notOk(existsSync(tree), 'the tree is gone');
  t.equal(
    readFileSync(join(outside, 'keep', 'file'), 'utf8'),
    'kept',
    'what the links point at is untouched',
  );
  t.equal(readFileSync(join(outside, 'single'), 'utf8'), 'kept');

  // A path that is itself a symlink to a directory: the link goes, not what it points at.
  const link = join(dir, 'link');
  symlinkSync(outside, link);
  await runner.removeTree(link);
  t.notOk(existsSync(link), 'the link is gone');
  t.ok(existsSync(join(outside, 'keep', 'file')), 'its target is not');
  await runner.removeTree(join(dir, 'never-there'));
  t.pass('a missing tree resolves');
});

t.test('without the compiled helper runcd forks through the Node helper, and says why once', async (t) => {
  for (const [nativeBinary, why] of [
    ['/nonexistent/runcd-spawn-helper', /is not there/],
    // A binary that runs but is not the helper: it exits without the hello, and what was sent goes to Node.
    ['/bin/true', /exited \(code 0\)/],
  ] as const) {
    const logged: { details: Record<string, unknown>; message: string }[] = [];
    const runner = new ProcessRunner(
      {},
      { nativeBinary, logger: { info: (details, message) => logged.push({ details, message }) } },
    );
    t.teardown(() => runner.close());
    const [first, second] = await Promise.all([
      runner.run('/bin/sh', ['-c', 'echo one'], { timeoutMs: 10_000 }),
      runner.run('/bin/sh', ['-c', 'echo two'], { timeoutMs: 10_000 }),
    ]);
    t.match([first.stdout, second.stdout], ['one\n', 'two\n'], `both calls ran (${nativeBinary})`);
    t.equal((await runner.run('true', [], { timeoutMs: 10_000 })).exitCode, 0);
    t.equal(runner.spawnHelperKind, 'node');
    t.ok(readFileSync(`/proc/${runner.spawnHelperPid}/cmdline`, 'utf8').includes('spawn-helper-process'));
    t.equal(logged.length, 1, 'logged once');
    t.match(logged[0], { details: { reason: why, binary: nativeBinary }, message: /Node helper/ });
  }
});

t.test(
  'the compiled helper survives garbage and oversized requests, answering each it can name',
  async (t) => {
    const child = spawn(NATIVE_HELPER_PATH, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    t.teardown(() => child.kill('SIGKILL'));
    const decoder = new AnswerDecoder();
    const answers: NativeAnswer[] = [];
    child.stdout.on('data', (chunk: Buffer) => answers.push(...decoder.push(chunk)));
    const header = (length: number, id: number, type: number) => {
      const buffer = Buffer.alloc(12);
      buffer.writeUInt32LE(length, 0);
      buffer.writeUInt32LE(id, 4);
      buffer.writeUInt32LE(type, 8);
      return buffer;
    };
    const lyingArgc = Buffer.alloc(20);
    lyingArgc.writeUInt32LE(1, 12); // a binary of length 1...
    const body = Buffer.concat([
      lyingArgc.subarray(0, 16),
      Buffer.from('x'),
      Buffer.from([0xff, 0xff, 0xff, 0x7f]),
    ]);
    child.stdin.write(Buffer.concat([header(body.length, 1, 1), body])); // ...and 2^31 arguments
    child.stdin.write(Buffer.concat([header(3, 2, 1), Buffer.from('abc')])); // a body too short for its fields
    child.stdin.write(header(0, 3, 99)); // an unknown type
    const huge = 65 * 1024 * 1024;
    child.stdin.write(header(huge, 4, 1)); // larger than any request may be: refused, and its body skipped
    child.stdin.write(Buffer.alloc(huge, 0xab));
    const nul = { binary: '/bin/sh', argv: ['-c', 'echo a\0b'], env: {}, timeoutMs: 0, outputLimitBytes: 10 };
    child.stdin.write(encodeRun({ type: 'run', id: 5, ...nul })); // a NUL inside an argument
    child.stdin.write(
      encodeRun({ type: 'run', id: 6, ...nul, argv: ['-c', 'echo still here'], outputLimitBytes: 100 }),
    );
    await eventually(
      async () => (answers.some((a) => a.type === 'done' && a.id === 6) ? true : undefined),
      30_000,
    );
    const failures = new Map(
      answers.flatMap((a) => (a.type === 'done' && a.spawnError ? [[a.id, a.spawnError]] : [])),
    );
    t.match(Object.fromEntries(failures), {
      1: /malformed request/,
      2: /malformed request/,
      3: /unknown request type/,
      4: /request too large/,
      5: /malformed request/,
    });
    t.match(
      answers.at(-1),
      { type: 'done', id: 6, exitCode: 0, stdout: 'still here\n' },
      'and it still works',
    );
  },
);

t.test('a SIGKILLed runcd leaves no helper behind, and the commands it started run on', async (t) => {
  const runner = fileURLToPath(new URL('../../src/runtime/process-runner.js', import.meta.url));
  const script =
    `import { ProcessRunner } from ${JSON.stringify(runner)};` +
    'const runner = new ProcessRunner();' +
    "void runner.run('/bin/sh', ['-c', 'sleep 300'], { timeoutMs: 600_000 });" +
    "await runner.capture('/bin/sh', ['-c', 'true'], { outputLimitBytes: 10, onSpawn: () => undefined });" +
    'console.log(JSON.stringify({ helper: runner.spawnHelperPid, kind: runner.spawnHelperKind }));' +
    'setInterval(() => undefined, 1000);';
  const daemon = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => daemon.kill('SIGKILL'));
  const line = await new Promise<string>((resolve) =>
    daemon.stdout.once('data', (chunk: Buffer) => resolve(`${chunk}`)),
  );
  const { helper, kind } = JSON.parse(line) as { helper: number; kind: string };
  t.equal(kind, 'native');
  const sleeper = await eventually(async () => {
    const children = readFileSync(`/proc/${helper}/task/${helper}/children`, 'utf8').trim().split(' ');
    return children[0] ? Number(children[0]) : undefined;
  });
  t.teardown(() => killGroup(sleeper));
  daemon.kill('SIGKILL');
  await eventually(async () => (isDead(helper) ? true : undefined));
  t.ok(isDead(helper), 'the helper exited when its runcd went');
  t.notOk(isDead(sleeper), 'the command it started runs on, in its own group');
});
