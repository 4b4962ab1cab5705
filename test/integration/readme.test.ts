import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DaemonProcess, makeSandbox, REPO_ROOT } from '../helpers/sandbox.js';

interface ShellBlock {
  language: string;
  body: string;
  /** The text of a `<!-- not run in tests: REASON -->` comment right above the block, if there is one. */
  notRunBecause: string | undefined;
}

/** The README's shell blocks (```sh and ```console), each with the reason it is not run, where it gives one. */
function shellBlocks(): ShellBlock[] {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  return [
    ...readme.matchAll(/(?:<!-- not run in tests: ((?:(?!-->)[^])*) -->\s*)?```(sh|console)\n([\s\S]*?)```/g),
  ].map((match) => ({ notRunBecause: match[1]?.trim(), language: match[2]!, body: match[3]! }));
}

/** Blocks the first test runs: curl examples (`rcd` is the README's curl alias). */
const isCurlBlock = (block: ShellBlock) =>
  block.language === 'sh' && block.notRunBecause === undefined && /curl|rcd /.test(block.body);
/** Blocks the second test runs: runcctl examples. */
const isRuncctlBlock = (block: ShellBlock) =>
  block.language === 'sh' &&
  block.notRunBecause === undefined &&
  !isCurlBlock(block) &&
  /^runcctl /m.test(block.body);

t.test('every shell block in the README is run below, or says why it cannot be', async (t) => {
  const blocks = shellBlocks();
  t.ok(blocks.length >= 10, `found ${blocks.length} shell blocks`);
  for (const block of blocks) {
    const firstLine = block.body.split('\n')[0];
    if (block.notRunBecause !== undefined) {
      t.ok(block.notRunBecause.length >= 20, `a real reason for not running: ${firstLine}`);
    } else {
      t.ok(isCurlBlock(block) || isRuncctlBlock(block), `run by a test below: ${firstLine}`);
    }
  }
});

/**
 * Every curl example in the README must work: run each curl block against a real daemon, with the README's socket
 * and demo bundle paths pointed at this test's sandbox, and fail on any HTTP error, unknown route or curl failure.
 */
t.test("the README's curl examples work as written", async (t) => {
  const sandbox = makeSandbox(t, 'readme');
  const daemon = new DaemonProcess(sandbox);
  t.teardown(() => daemon.close());
  await daemon.start();
  sandbox.bundle('demo');

  const blocks = shellBlocks()
    .filter(isCurlBlock)
    .map((block) => block.body);
  t.ok(blocks.length >= 2, `found ${blocks.length} example blocks`);

  for (const [index, block] of blocks.entries()) {
    const script = [
      'shopt -s expand_aliases',
      `alias rcd='curl -s -w "\\n[HTTP %{http_code}]\\n" --unix-socket ${sandbox.socket}'`,
      block
        .replace(/^alias rcd=.*$/m, '')
        .replaceAll('/run/runcd/runcd.sock', sandbox.socket)
        .replaceAll('/var/lib/runcd/bundles', sandbox.bundleRoot)
        // `runcd token ...` is this checkout's CLI, on the sandbox daemon's state dir.
        .replace(
          /\bruncd token /g,
          `${process.execPath} ${join(REPO_ROOT, 'bin', 'runcd.js')} token --state-dir ${sandbox.stateDir} `,
        ),
    ].join('\n');
    const run = spawnSync('bash', ['-c', script], { encoding: 'utf8', timeout: 120_000 });
    const output = run.stdout + run.stderr;
    const statuses = [...output.matchAll(/\[HTTP (\d{3})\]/g)].map((match) => Number(match[1]));
    t.ok(statuses.length > 0, `block ${index + 1} made requests`);
    t.same(
      statuses.filter((status) => status >= 400 || status === 0),
      [],
      `block ${index + 1}: no HTTP errors\n${output.slice(0, 4000)}`,
    );
    t.notMatch(output, /curl: \(\d+\)/, `block ${index + 1}: no curl failures`);
    // The stdin example's script ran in the container: its output and its own exit code came back.
    if (block.includes('/exec/stdin'))
      t.match(output, /"exitCode":3,"stdout":"hello from /, 'the piped script ran');
  }
});

t.test("the README's runcctl examples work as written, every command exiting 0", async (t) => {
  const sandbox = makeSandbox(t, 'readmectl');
  const daemon = new DaemonProcess(sandbox);
  t.teardown(() => daemon.close());
  await daemon.start();
  sandbox.bundle('demo');

  const blocks = shellBlocks()
    .filter(isRuncctlBlock)
    .map((block) => block.body);
  t.ok(blocks.length >= 1, `found ${blocks.length} runcctl blocks`);
  for (const [index, block] of blocks.entries()) {
    const script = [
      'set -euo pipefail',
      `runcctl() { ${process.execPath} ${join(REPO_ROOT, 'bin', 'runcctl.js')} --host unix://${sandbox.socket} "$@"; }`,
      block.replaceAll('/var/lib/runcd/bundles', sandbox.bundleRoot),
    ].join('\n');
    const run = spawnSync('bash', ['-c', script], { encoding: 'utf8', timeout: 300_000 });
    t.equal(
      run.status,
      0,
      `runcctl block ${index + 1} ran to the end\n${(run.stdout + run.stderr).slice(-4000)}`,
    );
    t.match(run.stdout, /^ID +PID +STATUS +BUNDLE +CREATED +OWNER$/m, "with runc's table in its output");
    if (/^echo hi \| runcctl exec/m.test(block)) t.match(run.stdout, /^hi$/m, 'the piped stdin reached cat');
    // The second attach found the shell the first one typed into, and detached with its own keys.
    if (/runcctl attach/.test(block)) t.match(run.stdout, /x is kept-42/, 'the same shell, attached again');
  }
});
