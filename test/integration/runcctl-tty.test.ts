import { spawn } from 'node:child_process';
import t from 'tap';
import { RUNCCTL } from '../helpers/cli.js';
import { DaemonProcess, eventually, makeSandbox } from '../helpers/sandbox.js';

// The seed lesson's Exercise 3 step 3, `runc exec -t mycontainer /sh`, as `runcctl exec -t`: runcctl runs in a
// real pseudo-terminal (util-linux `script`), a person's keystrokes are written to it, and what the terminal
// shows is read back.
const sandbox = makeSandbox(t, 'cttty');
const daemon = new DaemonProcess(sandbox);
t.teardown(() => daemon.close());

t.test('runcctl exec -t: an interactive shell inside the container', async (t) => {
  await daemon.start();
  const id = sandbox.id('mycontainer');
  const created = await daemon.request('POST', '/containers', {
    id,
    bundle: sandbox.bundle('c'),
    start: true,
  });
  t.equal(created.status, 201);

  // `script -e` exits with runcctl's code; the terminal it makes is 30x90, as a person's window might be.
  const command = `stty rows 30 cols 90; exec node ${RUNCCTL} --host unix://${sandbox.socket} exec -t ${id} /bin/sh`;
  const terminal = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let screen = '';
  terminal.stdout.on('data', (chunk: Buffer) => (screen += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => terminal.on('exit', (code) => resolve(code)));
  t.teardown(() => terminal.kill('SIGKILL'));
  const shows = async (pattern: RegExp, what: string) => {
    await eventually(async () => (pattern.test(screen) ? true : undefined), 15_000).catch(() => undefined);
    t.match(screen, pattern, what);
  };
  const type = (keys: string) => terminal.stdin.write(keys);

  await shows(/\/ # /, 'the shell prompt');
  type('stty size\n');
  await shows(/30 90\r/, "the local terminal's size is the container terminal's");
  type('ps\n');
  await shows(
    /PID\s+USER\s+(TIME\s+)?COMMAND\r[\s\S]*\/bin\/sh/,
    "ps lists the container's processes, the shell among them",
  );
  type('echo "pid:$$"\n');
  await shows(/pid:\d+\r/, 'echo $$ answers the shell pid');
  type('sleep 30; echo $((1+1))done\n');
  await new Promise((resolve) => setTimeout(resolve, 500));
  type('\x03');
  type('echo "after:$?"\n');
  await shows(/after:130\r/, '^C reached the container process (sleep ended by SIGINT)');
  t.notMatch(screen, /2done/, 'sleep did not run out');
  type('exit 3\n');
  t.equal(await exited, 3, "the shell's exit code is runcctl's");
});

t.test('runcctl exec -t refuses what runcd refuses, as runc does', async (t) => {
  const id = sandbox.id('mycontainer');
  const terminal = spawn(
    'script',
    ['-qec', `exec node ${RUNCCTL} --host unix://${sandbox.socket} exec -t ${id} /nonexistent`, '/dev/null'],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let screen = '';
  terminal.stdout.on('data', (chunk: Buffer) => (screen += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => terminal.on('exit', (exit) => resolve(exit)));
  t.equal(code, 255, 'exit 255, like runc exec when exec itself fails');
  t.match(screen, /executable file not found|no such file/, 'with the reason');
});
