import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { RUNCCTL } from '../helpers/cli.js';
import { DaemonProcess, eventually, makeSandbox } from '../helpers/sandbox.js';

// `runcctl attach` as a person uses it: in a real pseudo-terminal (util-linux `script`), keys written to it and
// the screen read back. A terminal container is attached to, typed into, resized (the window changes size:
// SIGWINCH), detached from with ctrl-p ctrl-q, and attached to again with detach keys of its own.
const sandbox = makeSandbox(t, 'ctattach');
const daemon = new DaemonProcess(sandbox);
t.teardown(() => daemon.close());

/** runcctl attach in a 30x90 pseudo-terminal; touching `resizeTrigger` makes the window 50x120. */
function attachInTerminal(t: Test, id: string, extra: string[] = []) {
  const resizeTrigger = join(sandbox.dir, `resize-${Math.random().toString(36).slice(2)}`);
  // The background job changes the size of runcctl's terminal, which sends runcctl SIGWINCH, as a window would.
  const command = [
    'stty rows 30 cols 90',
    // Named before going to the background, where a shell gives the job /dev/null for stdin.
    'terminal=$(tty)',
    `(while [ ! -e ${resizeTrigger} ]; do sleep 0.1; done; stty -F "$terminal" rows 50 cols 120) &`,
    `exec node ${RUNCCTL} --host unix://${sandbox.socket} attach ${extra.join(' ')} ${id}`,
  ].join('\n');
  const terminal = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let screen = '';
  terminal.stdout.on('data', (chunk: Buffer) => (screen += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => terminal.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    terminal.kill('SIGKILL');
    writeFileSync(resizeTrigger, '');
  });
  return {
    exited,
    type: (keys: string) => terminal.stdin.write(keys),
    resize: () => writeFileSync(resizeTrigger, ''),
    shows: async (pattern: RegExp, what: string) => {
      await eventually(async () => (pattern.test(screen) ? true : undefined), 15_000).catch(() => undefined);
      t.match(screen, pattern, what);
    },
  };
}

t.test('runcctl attach: type, resize, detach, attach again, exit code', async (t) => {
  await daemon.start();
  const id = sandbox.id('shell');
  const bundle = sandbox.bundle('shell', ['/bin/sh'], (spec) => {
    (spec.process as Record<string, unknown>).terminal = true;
  });
  const created = await daemon.request('POST', '/containers', { id, bundle, start: true });
  t.equal(created.status, 201);
  t.teardown(() => daemon.request('DELETE', `/containers/${id}?force=true`));

  const first = attachInTerminal(t, id);
  // Attaching shows no prompt by itself (it was printed before): a newline asks the shell for one.
  first.type('\n');
  await first.shows(/\/ # /, 'the shell prompt');
  first.type('stty size; X=kept-$((40+2))\n');
  await first.shows(/30 90\r/, "the window's size is the container terminal's");
  first.resize();
  // The resize is sent as it happens; the shell sees it on its next command.
  await new Promise((resolve) => setTimeout(resolve, 500));
  first.type('stty size\n');
  await first.shows(/50 120\r/, 'a window that changes size resizes the container terminal (SIGWINCH)');
  first.type('\x10\x11');
  t.equal(await first.exited, 0, 'ctrl-p ctrl-q detach: runcctl exits 0');
  const state = await daemon.request<{ status: string }>('GET', `/containers/${id}`);
  t.equal(state.body.status, 'running', 'and the container runs on');

  const second = attachInTerminal(t, id, ['--detach-keys', 'ctrl-a,d']);
  second.type('echo "x is $X"\n');
  await second.shows(/x is kept-42\r/, 'the same shell, its variables kept');
  second.type('\x01d');
  t.equal(await second.exited, 0, 'ctrl-a d detach');

  const third = attachInTerminal(t, id);
  third.type('exit 4\n');
  t.equal(await third.exited, 4, "the container's exit code is runcctl's");
});

t.test('runcctl attach refuses what runcd refuses, with exit code 1', async (t) => {
  const terminal = spawn(
    'script',
    [
      '-qec',
      `exec node ${RUNCCTL} --host unix://${sandbox.socket} attach --detach-keys ctrl-1 ${sandbox.id('shell')}`,
      '/dev/null',
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let screen = '';
  terminal.stdout.on('data', (chunk: Buffer) => (screen += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => terminal.on('exit', (exit) => resolve(exit)));
  t.equal(code, 1);
  t.match(screen, /unknown detach key "ctrl-1"/, 'with the reason');
});
