import { spawn } from 'node:child_process';
import t, { type Test } from 'tap';
import { withBusyboxImage } from '../helpers/docker-image.js';
import { eventually } from '../helpers/sandbox.js';

// docker run -it, docker attach (with detach keys), docker start -ai and resize, through the real docker CLI in a
// pseudo-terminal (util-linux `script`), as a user types them.

/** The docker CLI in a pty of its own (30x90): what it prints, keystrokes to type, its exit code. */
function inTerminal(t: Test, env: NodeJS.ProcessEnv, args: string) {
  const terminal = spawn('script', ['-qec', `stty rows 30 cols 90; exec docker ${args}`, '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env,
  });
  let screen = '';
  terminal.stdout.on('data', (chunk: Buffer) => (screen += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => terminal.on('exit', (code) => resolve(code)));
  t.teardown(() => terminal.kill('SIGKILL'));
  return {
    exited,
    type: (keys: string) => terminal.stdin.write(keys),
    screen: () => screen,
    shows: async (pattern: RegExp, what: string) => {
      await eventually(async () => (pattern.test(screen) ? true : undefined), 20_000).catch(() => undefined);
      t.match(screen, pattern, what);
    },
  };
}

t.test('docker run -it, attach, detach and start -ai on a terminal container', async (t) => {
  const { sandbox, run, dockerSocket } = await withBusyboxImage(t, 'dtty');
  const env = { ...process.env, DOCKER_HOST: `unix://${dockerSocket}` };

  await t.test('docker run -it --rm: a shell on a terminal, its size, its exit code', async (t) => {
    const shell = inTerminal(t, env, 'run -it --rm bb /bin/sh');
    await shell.shows(/\/ # /, 'the shell prompt');
    shell.type('echo "sum:$((20+22))"; tty\n');
    await shell.shows(/sum:42\r\n\/dev\/pts\/\d+\r\n/, 'typed input runs, on a pty');
    shell.type('stty size\n');
    await shell.shows(
      /\r\n30 90\r\n/,
      "the container's terminal has the CLI's size (POST /containers/ID/resize)",
    );
    shell.type('exit 5\n');
    t.equal(await shell.exited, 5, "the shell's exit code is the CLI's");
    await eventually(async () => ((await run('ps', '-aq')).stdout.trim() === '' ? true : undefined));
    t.equal((await run('ps', '-aq')).stdout.trim(), '', '--rm removed it');
  });

  const name = sandbox.id('term');
  await t.test('docker attach, detach with ctrl-p ctrl-q, attach again to the same shell', async (t) => {
    const made = await run('run', '-dit', '--name', name, 'bb', '/bin/sh');
    t.equal(made.code, 0, made.stderr);
    const first = inTerminal(t, env, `attach ${name}`);
    first.type('export MARK=kept-$((6*7))\n');
    first.type('echo "mark:$MARK"\n');
    await first.shows(/mark:kept-42/, 'the attached shell runs what is typed');
    first.type('\x10\x11');
    const firstCode = await first.exited;
    t.match(first.screen(), /read escape sequence/, `ctrl-p ctrl-q detaches (the CLI exits ${firstCode})`);
    t.match((await run('inspect', '-f', '{{.State.Status}} {{.Config.Tty}}', name)).stdout, /running true/);
    const second = inTerminal(t, env, `attach --detach-keys ctrl-a,d ${name}`);
    second.type('echo "again:$MARK"\n');
    await second.shows(/again:kept-42/, 'a second attach reaches the same shell');
    second.type('\x01d');
    const secondCode = await second.exited;
    t.match(
      second.screen(),
      /read escape sequence/,
      `custom detach keys detach (the CLI exits ${secondCode})`,
    );
    t.match((await run('inspect', '-f', '{{.State.Status}}', name)).stdout, /running/, 'still running');
  });

  await t.test('docker start -ai of the exited terminal container', async (t) => {
    t.equal((await run('kill', name)).code, 0);
    await eventually(async () =>
      (await run('inspect', '-f', '{{.State.Status}}', name)).stdout.trim() === 'exited' ? true : undefined,
    );
    const again = inTerminal(t, env, `start -ai ${name}`);
    await again.shows(/\/ # /, 'a new shell, attached');
    again.type('exit 7\n');
    const code = await again.exited;
    t.equal(code, 7, `start -ai ends with the container's exit code (${code})`);
  });

  await t.test('refusals that name the option', async (t) => {
    const stdinOnly = await run('run', '-i', '--rm', 'bb', 'cat');
    t.not(stdinOnly.code, 0);
    t.match(stdinOnly.stderr, /stdin for a container without a TTY/);
  });
});
