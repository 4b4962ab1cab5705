import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { rawRequest } from '../helpers/raw-http.js';
import { DaemonProcess, makeSandbox, REPO_ROOT } from '../helpers/sandbox.js';

// A process's stdin in one plain HTTP request: the body is what it reads, the answer its exit code and output.
const run = promisify(execFile);
const sandbox = makeSandbox(t, 'exstdin');

t.test('exec with the request body as stdin', async (t) => {
  // A daemon of its own, listening on its socket, so the real curl drives it.
  const daemon = new DaemonProcess(sandbox);
  t.teardown(() => daemon.close());
  await daemon.start();
  const id = sandbox.id('c');
  const bundle = sandbox.bundle('c');
  t.equal((await daemon.request('POST', '/containers', { id, bundle, start: true })).status, 201);
  const curl = async (query: string, ...args: string[]) => {
    const { stdout } = await run(
      'curl',
      [
        '-s',
        '--unix-socket',
        sandbox.socket,
        '-X',
        'POST',
        ...args,
        `http://runcd/containers/${id}/exec/stdin?${query}`,
      ],
      { maxBuffer: 64 * 1024 * 1024 },
    );
    return JSON.parse(stdout) as {
      exitCode?: number;
      stdout?: string;
      stderr?: string;
      code?: string;
      status?: number;
      detail?: string;
    };
  };

  t.test('a script piped into sh, as the README shows it', async (t) => {
    const script = join(sandbox.dir, 'script.sh');
    writeFileSync(script, 'echo "pid $$ in $(hostname)"\necho to-err >&2\nexit 3\n');
    const answer = await curl(
      'args=sh',
      '-H',
      'Content-Type: application/octet-stream',
      '--data-binary',
      `@${script}`,
    );
    t.equal(answer.exitCode, 3);
    t.match(answer.stdout, /^pid \d+ in /);
    t.equal(answer.stderr, 'to-err\n');
  });

  t.test('bytes arrive exactly and EOF reaches the process', async (t) => {
    const input = randomBytes(4 * 1024 * 1024 + 3);
    const file = join(sandbox.dir, 'input.bin');
    writeFileSync(file, input);
    const answer = await curl(
      'args=sh&args=-c&args=' + encodeURIComponent('sha256sum; echo eof-seen >&2'),
      '-H',
      'Content-Type: application/octet-stream',
      '--data-binary',
      `@${file}`,
    );
    t.equal(answer.exitCode, 0, answer.stderr ?? '');
    t.equal(answer.stdout?.split(' ')[0], createHash('sha256').update(input).digest('hex'));
    t.equal(answer.stderr, 'eof-seen\n');
  });

  t.test('no body is EOF at once; a process that reads nothing still answers', async (t) => {
    const empty = await curl('args=wc&args=-c');
    t.equal(empty.exitCode, 0);
    t.equal(empty.stdout?.trim(), '0');
    const ignoring = await curl(
      'args=true',
      '-H',
      'Content-Type: application/octet-stream',
      '--data-binary',
      `@${join(sandbox.dir, 'input.bin')}`,
    );
    t.equal(ignoring.exitCode, 0, 'stdin the process never reads is dropped, as in a shell pipeline');
  });

  t.test('mistakes are 4xx naming the problem', async (t) => {
    const noArgs = await curl('', '-H', 'Content-Type: application/octet-stream', '--data-binary', 'x');
    t.equal(noArgs.status, 400);
    t.equal(noArgs.code, 'invalid_query');
    t.match(noArgs.detail ?? '', /args/);
    const json = await rawRequest(sandbox.socket, {
      method: 'POST',
      path: `/containers/${id}/exec/stdin?args=cat`,
      headers: { 'content-type': 'text/plain' },
      body: 'hello',
    });
    t.equal(json.status, 415, 'stdin is sent as application/octet-stream');
    const missing = await curl(
      'args=true',
      '-H',
      'Content-Type: application/octet-stream',
      '--data-binary',
      'x',
    );
    t.equal(missing.status, undefined);
    const gone = await rawRequest(sandbox.socket, {
      method: 'POST',
      path: `/containers/${sandbox.id('nope')}/exec/stdin?args=cat`,
      headers: { 'content-type': 'application/octet-stream' },
      body: 'x',
    });
    t.equal(gone.status, 404);
    t.equal(gone.problem?.code, 'container_not_found');
  });
});

t.test('runcctl exec forwards a piped stdin as runc exec does', async (t) => {
  const daemon = new DaemonProcess(sandbox);
  t.teardown(() => daemon.close());
  await daemon.start();
  const id = sandbox.id('cli');
  t.equal(
    (await daemon.request('POST', '/containers', { id, bundle: sandbox.bundle('cli'), start: true })).status,
    201,
  );
  // `input` null: a stdin pipe that stays open and silent, as a script's (or execFile's) is.
  const runcctl = (input: string | null, ...args: string[]) =>
    new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = spawn(process.execPath, [
        join(REPO_ROOT, 'bin', 'runcctl.js'),
        '--host',
        `unix://${sandbox.socket}`,
        ...args,
      ]);
      let stdout = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.on('close', (code) => {
        child.stdin.destroy();
        resolve({ code, stdout });
      });
      if (input !== null) child.stdin.end(input);
    });
  const echoed = await runcctl('hi\n', 'exec', id, 'cat');
  t.equal(echoed.stdout, 'hi\n', 'echo hi | runcctl exec ID cat prints hi');
  t.equal(echoed.code, 0);
  const eof = await runcctl('a\nb\n', 'exec', id, 'sh', '-c', 'wc -l; exit 5');
  t.equal(eof.stdout.trim(), '2', 'EOF reaches the process');
  t.equal(eof.code, 5, "the process's exit code is runcctl's");
  // runc exec ID ps with an open stdin returns when ps exits; so must runcctl (its request is sent at once,
  // not held until the first byte of a stdin that never comes).
  const silent = await runcctl(null, 'exec', id, 'sh', '-c', 'echo ran; exit 3');
  t.equal(silent.stdout, 'ran\n', 'a process that never reads an open, silent stdin runs');
  t.equal(silent.code, 3, 'and runcctl exits with its code without waiting for EOF');
});
