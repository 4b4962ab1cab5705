import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { RuntimeBusyError } from '../../src/errors.js';
import { OperationContext, runInOperation } from '../../src/runtime/operation-context.js';
import { ProcessRunner } from '../../src/runtime/process-runner.js';
import { eventually } from '../helpers/sandbox.js';

/** Gone, or a zombie nobody has reaped yet: either way it runs no more. */
function isDead(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return true;
  }
}

t.test('a deadline kills the whole process group, not just the child', async (t) => {
  const runner = new ProcessRunner();
  // The shell starts a grandchild in the background and waits; only a group kill reaches the grandchild.
  const result = await runner.run('/bin/sh', ['-c', 'sleep 300 & echo $!; wait'], { timeoutMs: 300 });
  t.equal(result.timedOut, true);
  const grandchild = Number(result.stdout.trim());
  t.ok(grandchild > 0, `grandchild pid ${grandchild}`);
  await eventually(async () => (isDead(grandchild) ? true : undefined));
  t.ok(isDead(grandchild), 'the background sleep was killed with its group');
});

t.test('children get a clean environment', async (t) => {
  const runner = new ProcessRunner();
  process.env.RUNCD_TEST_SECRET = 'must-not-leak';
  t.teardown(() => delete process.env.RUNCD_TEST_SECRET);
  const result = await runner.run('cat', ['/proc/self/environ'], { timeoutMs: 10_000, env: { EXTRA: '1' } });
  // tap's process tracker adds NODE_OPTIONS and _TAPJS_* (some with newlines in them) to every child of a test
  // process; outside tap they are not there.
  const entries = result.stdout
    .split('\0')
    .filter((entry) => entry !== '' && !/^(NODE_OPTIONS|_TAPJS_[A-Z_]+)=/.test(entry));
  t.same(entries.sort(), ['EXTRA=1', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
  t.notOk(result.stdout.includes('must-not-leak'));
});

t.test('when the pool and its queue are full, new work is refused with a 503 and Retry-After', async (t) => {
  const runner = new ProcessRunner({ maxConcurrent: 1, maxQueued: 1, maxSessions: 1, maxSessionsQueued: 0 });
  const running = runner.run('sleep', ['0.5'], { timeoutMs: 10_000 });
  const queued = runner.run('true', [], { timeoutMs: 10_000 });
  await new Promise((resolve) => setImmediate(resolve));
  t.same(runner.load, { commands: 1, commandsQueued: 1, sessions: 0, sessionsQueued: 0 });
  const spawnsBefore = runner.spawnCount;
  // A request's first runtime call is the one that can be refused.
  const refused = await runInOperation(new OperationContext(), () =>
    runner.run('true', [], { timeoutMs: 10_000 }),
  ).catch((error: unknown) => error);
  t.ok(refused instanceof RuntimeBusyError, 'a RuntimeBusyError');
  t.match(refused, { status: 503, code: 'runtime_busy', retryAfterSeconds: 1 });
  t.match((refused as Error).message, /too many runtime commands at once \(1 running, 1 waiting\)/);
  t.equal(runner.spawnCount, spawnsBefore, 'nothing was spawned for it');
  // runcd's own work outside any request (startup, restarts by policy) always queues.
  const background = runner.run('true', [], { timeoutMs: 10_000 });

  // An operation that already got a slot is never refused a later one: it finishes what it started.
  const operation = new OperationContext();
  operation.admitted = true;
  const admitted = runInOperation(operation, () => runner.run('true', [], { timeoutMs: 10_000 }));
  t.equal((await running).exitCode, 0);
  t.equal((await queued).exitCode, 0);
  t.equal((await admitted).exitCode, 0);
  t.equal((await background).exitCode, 0);
  t.equal(operation.invocations.length, 1, 'the invocation is recorded in its operation');
  t.match(operation.invocations[0], { binary: 'true', exitCode: 0, timedOut: false });

  // Long-lived sessions have their own pool: a full session pool leaves commands alone.
  const session = await runner.spawn('sleep', ['0.5'], {
    stdio: ['ignore', 'ignore', 'ignore'],
    longLived: true,
  });
  await t.rejects(
    runInOperation(new OperationContext(), () =>
      runner.spawn('true', [], { stdio: ['ignore', 'ignore', 'ignore'], longLived: true }),
    ),
    /too many exec sessions at once/,
  );
  t.equal((await runner.run('true', [], { timeoutMs: 10_000 })).exitCode, 0, 'commands still run');
  await session.child;
  t.same(runner.load, { commands: 0, commandsQueued: 0, sessions: 0, sessionsQueued: 0 }, 'every slot freed');
});

t.test('captured commands are forked by the spawn helper, not by runcd', async (t) => {
  const runner = new ProcessRunner();
  t.teardown(() => runner.close());
  const result = await runner.run('/bin/sh', ['-c', 'echo $PPID; echo oops >&2; exit 3'], {
    timeoutMs: 10_000,
  });
  t.equal(result.exitCode, 3, 'the exit status comes back');
  t.equal(result.stderr, 'oops\n', 'stderr comes back');
  const helper = runner.spawnHelperPid;
  t.ok(helper && helper !== process.pid, `the helper is a process of its own (${helper})`);
  t.equal(Number(result.stdout.trim()), helper, "the command's parent is the helper");

  const missing = await runner
    .run('/nonexistent/binary', [], { timeoutMs: 10_000 })
    .catch((error: unknown) => error);
  t.match(
    missing,
    { message: /^cannot run \/nonexistent\/binary: .*ENOENT/ },
    'a binary that cannot start is an error',
  );

  const captured = await runner.capture('/bin/sh', ['-c', 'head -c 100000 /dev/zero; exit 0'], {
    outputLimitBytes: 1000,
  });
  t.match(captured, { exitCode: 0, truncated: true }, 'capture keeps its bound');
  t.equal(captured.stdout.length, 1000, 'and exactly the bytes it may');
  let spawnedPid = 0;
  const signalled = await runner.capture('/bin/sh', ['-c', 'kill -TERM $$'], {
    outputLimitBytes: 1000,
    onSpawn: (pid) => (spawnedPid = pid),
  });
  t.match(signalled, { exitCode: undefined, signal: 'SIGTERM' }, 'a signal is reported as such');
  t.ok(spawnedPid > 0, 'the pid was reported once the process ran');
});

t.test('a helper that dies fails its calls in flight, and the next call starts a new one', async (t) => {
  const runner = new ProcessRunner();
  t.teardown(() => runner.close());
  await runner.run('true', [], { timeoutMs: 10_000 });
  const first = runner.spawnHelperPid!;
  const inFlight = runner.run('sleep', ['5'], { timeoutMs: 10_000 });
  await new Promise((resolve) => setTimeout(resolve, 200));
  process.kill(first, 'SIGKILL');
  await t.rejects(inFlight, /the spawn helper exited \(SIGKILL\)/, 'the call in flight fails');
  t.equal((await runner.run('true', [], { timeoutMs: 10_000 })).exitCode, 0, 'the next call works');
  t.not(runner.spawnHelperPid, first, 'through a new helper');
  t.same(runner.load, { commands: 0, commandsQueued: 0, sessions: 0, sessionsQueued: 0 }, 'every slot freed');

  const second = runner.spawnHelperPid!;
  runner.close();
  await eventually(async () => (isDead(second) ? true : undefined));
  t.ok(isDead(second), 'close() ends the helper');
  t.equal(
    (await runner.run('true', [], { timeoutMs: 10_000 })).exitCode,
    0,
    'a closed runner still runs commands (spawned directly)',
  );
});

t.test('removeTree removes a nested tree through the helper, and without one', async (t) => {
  for (const spawnHelper of [true, false]) {
    const runner = new ProcessRunner({}, { spawnHelper });
    t.teardown(() => runner.close());
    const root = mkdtempSync(join(tmpdir(), 'runcd-remove-'));
    t.teardown(() => rmSync(root, { recursive: true, force: true }));
    const tree = join(root, 'doomed');
    mkdirSync(join(tree, 'bundle', 'deep'), { recursive: true });
    writeFileSync(join(tree, 'ctr.log'), 'x'.repeat(100_000));
    writeFileSync(join(tree, 'bundle', 'deep', 'config.json'), '{}');
    symlinkSync('/etc', join(tree, 'bundle', 'host-etc'));
    await runner.removeTree(tree);
    t.notOk(existsSync(tree), `the tree is gone (helper: ${spawnHelper})`);
    t.ok(existsSync('/etc/passwd'), 'a symlink in it was removed, not followed');
    t.equal(
      spawnHelper,
      runner.spawnHelperPid !== undefined,
      'went through the helper only when there is one',
    );
    // Removing what is not there is not an error (a sweep and a delete can both reach a tree).
    await runner.removeTree(tree);
    t.pass(`a missing tree resolves (helper: ${spawnHelper})`);
  }
});

t.test("a command's input reaches its stdin byte for byte: large, multi-byte and empty", async (t) => {
  for (const spawnHelper of [true, false]) {
    const runner = new ProcessRunner({}, { spawnHelper });
    t.teardown(() => runner.close());
    const via = spawnHelper ? 'through the helper' : 'spawned directly';
    // 4 MiB is far past a pipe's 64 KiB buffer, so the writer must wait for the reader; the text mixes multi-byte
    // UTF-8 and newlines, and sha256sum sees exactly the bytes that arrived.
    const large = Array.from({ length: 1 << 17 }, (_, i) => `${i}:ünïcødé✓\n`)
      .join('')
      .slice(0, 4 << 20);
    const expected = createHash('sha256').update(large, 'utf8').digest('hex');
    const hashed = await runner.run('sha256sum', [], { input: large, timeoutMs: 30_000 });
    t.equal(hashed.exitCode, 0, `sha256sum ran (${via})`);
    t.equal(hashed.stdout.split(' ')[0], expected, `the large input arrived byte for byte (${via})`);
    const counted = await runner.run('wc', ['-c'], { input: large, timeoutMs: 30_000 });
    t.equal(Number(counted.stdout.trim()), Buffer.byteLength(large), `and all of its bytes (${via})`);

    const echoed = await runner.run('cat', [], { input: '{"cniVersion":"1.0.0"}\n', timeoutMs: 10_000 });
    t.equal(echoed.stdout, '{"cniVersion":"1.0.0"}\n', `a small input comes back as it went (${via})`);

    // An empty input is a stdin that ends at once: cat reads EOF and exits instead of waiting.
    const empty = await runner.run('wc', ['-c'], { input: '', timeoutMs: 10_000 });
    t.match(empty, { exitCode: 0, timedOut: false }, `an empty input ends stdin at once (${via})`);
    t.equal(Number(empty.stdout.trim()), 0, `and gives no bytes (${via})`);

    // Without input, stdin is closed (not a pipe left open): a reader gets EOF, never a wait.
    const none = await runner.run('wc', ['-c'], { timeoutMs: 10_000 });
    t.match(none, { exitCode: 0, timedOut: false, stdout: '0\n' }, `no input is an empty stdin (${via})`);

    // A child that exits without reading a large input is not an error of the runner (EPIPE is its answer).
    const ignoring = await runner.run('true', [], { input: large, timeoutMs: 10_000 });
    t.equal(ignoring.exitCode, 0, `a child that never reads its input still reports its exit (${via})`);
  }
});
