import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DaemonProcess, makeSandbox, REPO_ROOT } from '../helpers/sandbox.js';

/**
 * Every curl example in the README must work: run each shell block after the Quick start against a real daemon,
 * with the README's socket and demo bundle paths pointed at this test's sandbox, and fail on any HTTP error,
 * unknown route or curl failure.
 */
t.test("the README's curl examples work as written", async (t) => {
  const sandbox = makeSandbox(t, 'readme');
  const daemon = new DaemonProcess(sandbox);
  t.teardown(() => daemon.close());
  await daemon.start();
  sandbox.bundle('demo');

  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)]
    .map((match) => match[1]!)
    .filter((block) => /curl|rcd /.test(block) && !block.includes('./setup.sh'));
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
  }
});
