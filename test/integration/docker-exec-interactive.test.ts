import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { PassThrough, type Duplex } from 'node:stream';
import Docker from 'dockerode';
import t from 'tap';
import { startWithDockerSocket } from '../helpers/docker-cli.js';
import { dockerRequest, hijackedStart } from '../helpers/docker-hijack.js';
import { eventually, makeSandbox } from '../helpers/sandbox.js';

// `docker exec -it` and `docker exec -i` through runcd's Docker socket, with the real docker CLI in a real
// pseudo-terminal (util-linux `script`), dockerode's hijack, and raw clients that misbehave. Each exec runs as an
// interactive session through conmon; none may leave a process, a conmon or a session directory behind.
const sandbox = makeSandbox(t, 'dexec');
const id = sandbox.id('c');
const sessionsDir = join(sandbox.stateDir, 'sessions');

/** Running (a zombie nobody reaped yet does not count). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function rssKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}

interface ExecInspect {
  Running: boolean;
  ExitCode: number | null;
  Pid: number;
  OpenStdin: boolean;
  ProcessConfig: { tty: boolean };
}

t.test('docker exec -it and -i through the Docker socket', async (t) => {
  const { daemon, dockerSocket } = await startWithDockerSocket(t, sandbox);
  const created = await daemon.request('POST', '/containers', {
    id,
    bundle: sandbox.bundle('c'),
    start: true,
  });
  t.equal(created.status, 201);
  const env = { ...process.env, DOCKER_HOST: `unix://${dockerSocket}` };
  const createExec = async (body: Record<string, unknown>) => {
    const answer = await dockerRequest(dockerSocket, 'POST', `/v1.50/containers/${id}/exec`, body);
    t.equal(answer.status, 201, answer.text);
    return (JSON.parse(answer.text) as { Id: string }).Id;
  };
  const inspectExec = async (execId: string) =>
    JSON.parse((await dockerRequest(dockerSocket, 'GET', `/v1.50/exec/${execId}/json`)).text) as ExecInspect;

  await t.test('docker exec -it in a terminal: echo $$, stty size after a resize, exit 3', async (t) => {
    // The terminal `script` makes starts at 30x90; once the test makes `resize-now`, a background stty (in the
    // terminal's foreground group, as the shell has no job control) resizes it and the CLI gets its SIGWINCH.
    const flag = join(sandbox.dir, 'resize-now');
    const command =
      `stty rows 30 cols 90; (while [ ! -e ${flag} ]; do sleep 0.1; done; stty rows 40 cols 132 < /dev/tty) & ` +
      `exec docker exec -it ${id} /bin/sh`;
    const terminal = spawn('script', ['-qec', command, '/dev/null'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env,
    });
    let screen = '';
    terminal.stdout.on('data', (chunk: Buffer) => (screen += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => terminal.on('exit', (code) => resolve(code)));
    t.teardown(() => {
      terminal.kill('SIGKILL');
      rmSync(flag, { force: true });
    });
    const shows = async (pattern: RegExp, what: string) => {
      await eventually(async () => (pattern.test(screen) ? true : undefined), 15_000).catch(() => undefined);
      t.match(screen, pattern, what);
    };
    const type = (keys: string) => terminal.stdin.write(keys);

    await shows(/\/ # /, 'the shell prompt');
    type('echo "pid:$$"; tty\n');
    await shows(/pid:\d+\r\n\/dev\/pts\/\d+\r\n/, 'echo $$ answers, and the shell has a terminal');
    type('stty size\n');
    await shows(/\r\n30 90\r\n/, "the CLI's terminal size is the exec's (ConsoleSize, then resize)");
    writeFileSync(flag, '');
    await eventually(async () => {
      type('stty size\n');
      await new Promise((resolve) => setTimeout(resolve, 300));
      return /\r\n40 132\r\n/.test(screen) ? true : undefined;
    }, 15_000).catch(() => undefined);
    t.match(
      screen,
      /\r\n40 132\r\n/,
      'a SIGWINCH of the CLI resizes the exec terminal (POST /exec/ID/resize)',
    );
    type('exit 3\n');
    t.equal(await exited, 3, "the shell's exit code is the CLI's exit status");
  });

  await t.test('docker exec -i ID sha256sum: 10 MiB of piped stdin, byte for byte', async (t) => {
    const input = randomBytes(10 * 1024 * 1024);
    const cli = spawn('docker', ['exec', '-i', id, 'sha256sum'], { stdio: ['pipe', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    cli.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    cli.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = new Promise<number | null>((resolve) => cli.on('exit', (exit) => resolve(exit)));
    cli.stdin.on('error', () => undefined);
    cli.stdin.end(input);
    t.equal(await code, 0, stderr);
    t.equal(stdout.split(/\s/)[0], createHash('sha256').update(input).digest('hex'), 'the checksum is equal');
  });

  await t.test('docker exec -i ID cat: EOF on stdin ends it, its exit code is the CLI status', async (t) => {
    const run = (args: string[], input: string) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const cli = spawn('docker', ['exec', '-i', id, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
        let stdout = '';
        let stderr = '';
        cli.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        cli.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        cli.on('exit', (code) => resolve({ code, stdout, stderr }));
        cli.stdin.end(input);
      });
    const cat = await run(['cat'], 'hello-stdin\nsecond line\n');
    t.equal(cat.code, 0, cat.stderr);
    t.equal(cat.stdout, 'hello-stdin\nsecond line\n', 'cat printed its stdin and ended at EOF');
    const both = await run(['sh', '-c', 'cat; echo stdin-eof; echo to-err >&2; exit 2'], 'x\n');
    t.equal(both.code, 2, 'exit 2 is the CLI status');
    t.equal(both.stdout, 'x\nstdin-eof\n', 'stdout frames');
    t.equal(both.stderr, 'to-err\n', 'stderr frames stay apart (no TTY: multiplexed)');
    const empty = await run(['cat'], '');
    t.equal(empty.code, 0, 'an empty stdin is an EOF at once');
    const missing = await run(['no-such-program'], '');
    t.equal(missing.code, 127, 'a missing program exits 127, as with Docker');
    t.match(missing.stderr, /no-such-program/);
  });

  await t.test('dockerode exec.start({hijack: true, stdin: true})', async (t) => {
    const docker = new Docker({ socketPath: dockerSocket });
    const container = docker.getContainer(id);
    const exec = await container.exec({
      Cmd: ['sh', '-c', 'cat; echo done >&2'],
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
    });
    const stream = (await exec.start({ hijack: true, stdin: true })) as Duplex;
    const out = new PassThrough();
    const err = new PassThrough();
    let outText = '';
    let errText = '';
    out.on('data', (chunk: Buffer) => (outText += chunk.toString()));
    err.on('data', (chunk: Buffer) => (errText += chunk.toString()));
    docker.modem.demuxStream(stream, out, err);
    const ended = new Promise((resolve) => stream.on('end', resolve));
    stream.write('from-dockerode\n');
    stream.end();
    await ended;
    t.equal(outText, 'from-dockerode\n', 'stdin came back on stdout');
    t.equal(errText, 'done\n', 'stderr demultiplexed');
    const inspected = await exec.inspect();
    t.match(inspected, { Running: false, ExitCode: 0, OpenStdin: true }, 'inspect: ended, exit 0');

    // With a terminal, and Tty on the start too: one raw stream (no frames), as Docker sends it.
    const ttyExec = await container.exec({
      Cmd: ['sh', '-c', 'read line; echo "got:$line"; exit 4'],
      AttachStdin: true,
      AttachStdout: true,
      Tty: true,
    });
    const raw = (await ttyExec.start({ hijack: true, stdin: true, Tty: true })) as Duplex;
    let rawText = '';
    raw.on('data', (chunk: Buffer) => (rawText += chunk.toString()));
    const rawEnded = new Promise((resolve) => raw.on('end', resolve));
    raw.write('typed\r');
    await rawEnded;
    t.match(rawText, /got:typed\r\n/, 'the terminal echoed and the shell read the line');
    t.not(rawText.charCodeAt(0), 1, 'no multiplexing header');
    t.match(await ttyExec.inspect(), { Running: false, ExitCode: 4, ProcessConfig: { tty: true } });
  });

  await t.test('exec resize: sizes checked, a non-terminal refused, an unknown exec 404', async (t) => {
    const ttyId = await createExec({ Cmd: ['sh'], Tty: true, AttachStdin: true, AttachStdout: true });
    const resize = (execId: string, query: string) =>
      dockerRequest(dockerSocket, 'POST', `/v1.50/exec/${execId}/resize?${query}`);
    t.equal((await resize(ttyId, 'h=33&w=77')).status, 200, 'a resize before the start is kept for it');
    t.equal((await resize(ttyId, 'h=0&w=77')).status, 400, 'a zero height');
    t.equal((await resize(ttyId, 'h=abc&w=77')).status, 400, 'a height that is no number');
    t.equal((await resize(ttyId, 'w=77')).status, 400, 'no height');
    const { socket, head } = await hijackedStart(dockerSocket, ttyId, { Detach: false, Tty: true });
    t.match(head, /^HTTP\/1\.1 101 UPGRADED\r\n/, '101 UPGRADED');
    t.match(head, /Content-Type: application\/vnd\.docker\.raw-stream/, 'a raw stream with a TTY');
    let screen = '';
    socket.on('data', (chunk: Buffer) => (screen += chunk.toString()));
    socket.resume();
    socket.write('stty size\r');
    await eventually(async () => (/33 77\r\n/.test(screen) ? true : undefined), 10_000).catch(
      () => undefined,
    );
    t.match(screen, /33 77\r\n/, 'the size sent before the start was the terminal size at start');
    t.equal((await resize(ttyId, 'h=50&w=150')).status, 200);
    socket.write('stty size\r');
    await eventually(async () => (/50 150\r\n/.test(screen) ? true : undefined), 10_000).catch(
      () => undefined,
    );
    t.match(screen, /50 150\r\n/, 'a resize while it runs');
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write('exit 6\r');
    await closed;
    t.match(await inspectExec(ttyId), { Running: false, ExitCode: 6 });
    t.equal((await resize(ttyId, 'h=10&w=10')).status, 409, 'an ended exec cannot be resized');
    const pipeId = await createExec({ Cmd: ['cat'], AttachStdin: true, AttachStdout: true });
    const refused = await resize(pipeId, 'h=10&w=10');
    t.equal(refused.status, 400, 'an exec without a terminal cannot be resized');
    t.match(refused.text, /no terminal/);
    t.equal((await resize('f'.repeat(64), 'h=10&w=10')).status, 404, 'an unknown exec');
    const badSize = await dockerRequest(dockerSocket, 'POST', `/v1.50/containers/${id}/exec`, {
      Cmd: ['sh'],
      Tty: true,
      ConsoleSize: [-1, 80],
    });
    t.equal(badSize.status, 400, 'a negative ConsoleSize');
  });

  await t.test('a client that leaves hangs the process up; Detach keeps it', async (t) => {
    // The CLI killed: its terminal session's shell gets SIGHUP, then the exec ends.
    const command = `exec docker exec -it ${id} sh -c 'echo ready; exec sleep 300'`;
    const terminal = spawn('script', ['-qec', command, '/dev/null'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env,
    });
    let screen = '';
    terminal.stdout.on('data', (chunk: Buffer) => (screen += chunk.toString()));
    await eventually(async () => (screen.includes('ready') ? true : undefined), 15_000);
    const sleeper = await eventually(async () => {
      const processes = await daemon.request<Array<{ pid: number; command: string }>>(
        'GET',
        `/containers/${id}/processes`,
      );
      return processes.body.find((each) => each.command === 'sleep 300');
    }, 10_000);
    terminal.kill('SIGKILL');
    // script's child (the CLI) goes with its terminal: the pty's hang-up ends it.
    await eventually(async () => {
      const processes = await daemon.request<Array<{ command: string }>>(
        'GET',
        `/containers/${id}/processes`,
      );
      return processes.body.some((each) => each.command === 'sleep 300') ? undefined : true;
    }, 20_000).catch(() => undefined);
    const after = await daemon.request<Array<{ command: string }>>('GET', `/containers/${id}/processes`);
    t.notOk(
      after.body.some((each) => each.command === 'sleep 300'),
      `the exec's process (container pid ${sleeper.pid}) ended once its client was gone`,
    );

    const detachedId = await createExec({
      Cmd: ['sh', '-c', 'exec sleep 301'],
      Tty: true,
      AttachStdout: true,
    });
    const started = await dockerRequest(dockerSocket, 'POST', `/v1.50/exec/${detachedId}/start`, {
      Detach: true,
      Tty: true,
    });
    t.equal(started.status, 200, 'a detached start answers at once');
    const inspected = await inspectExec(detachedId);
    t.match(inspected, { Running: true, ExitCode: null }, 'and the process runs, with nobody attached');
    t.ok(inspected.Pid > 0 && alive(inspected.Pid), 'its pid is a live process');
    process.kill(inspected.Pid, 'SIGTERM');
    await eventually(async () => ((await inspectExec(detachedId)).Running ? undefined : true), 10_000);
    t.match(await inspectExec(detachedId), { Running: false, ExitCode: 143 }, 'its exit code is recorded');
  });

  await t.test('hostile clients: one that never reads, one that leaves mid-write', async (t) => {
    const pid = daemon.pid()!;
    const before = rssKiB(pid);
    const endless = await createExec({
      Cmd: ['sh', '-c', 'while true; do echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done'],
      AttachStdin: true,
      AttachStdout: true,
    });
    const { socket } = await hijackedStart(dockerSocket, endless, { Detach: false, Tty: false });
    socket.on('error', () => undefined);
    // Never read: the kernel's buffer fills, then runcd holds up to its bound and cuts the client off.
    let peakKiB = before;
    const sampler = setInterval(() => (peakKiB = Math.max(peakKiB, rssKiB(pid))), 20);
    await eventually(async () => ((await inspectExec(endless)).Running ? undefined : true), 30_000).catch(
      () => undefined,
    );
    clearInterval(sampler);
    socket.destroy();
    const inspected = await inspectExec(endless);
    t.equal(inspected.Running, false, 'the session of a client that never reads is dropped');
    t.equal(inspected.ExitCode, 129, 'its process was hung up (SIGHUP)');
    t.ok(
      peakKiB - before < 150 * 1024,
      `runcd's RSS grew by ${peakKiB - before} KiB meanwhile (bound 150 MiB)`,
    );

    const reader = await createExec({
      Cmd: ['sh', '-c', 'cat > /dev/null; echo never-seen'],
      AttachStdin: true,
    });
    const writer = await hijackedStart(dockerSocket, reader, { Detach: false, Tty: false });
    writer.socket.on('error', () => undefined);
    const chunk = randomBytes(64 * 1024);
    for (let i = 0; i < 16; i++) writer.socket.write(chunk);
    writer.socket.destroy();
    await eventually(async () => ((await inspectExec(reader)).Running ? undefined : true), 20_000).catch(
      () => undefined,
    );
    t.equal((await inspectExec(reader)).Running, false, 'a client that left mid-write: its process ended');
    t.equal((await daemon.request('GET', '/healthz')).status, 200, 'runcd still answers');
  });

  await t.test('POST /containers/ID/wait sends its headers at once', async (t) => {
    const waited = sandbox.id('waited');
    t.equal(
      (await daemon.request('POST', '/containers', { id: waited, bundle: sandbox.bundle('w'), start: true }))
        .status,
      201,
    );
    const socket = connect(dockerSocket);
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write(
      `POST /v1.50/containers/${waited}/wait?condition=next-exit HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
    );
    await eventually(async () => (text.includes('\r\n\r\n') ? true : undefined), 10_000).catch(
      () => undefined,
    );
    t.match(text, /^HTTP\/1\.1 200 /, 'the status line and headers came while the container still runs');
    t.equal(
      (await daemon.request<{ status: string }>('GET', `/containers/${waited}`)).body.status,
      'running',
    );
    t.notMatch(text, /StatusCode/, 'the body waits for the exit');
    t.equal((await daemon.request('POST', `/containers/${waited}/kill?signal=SIGKILL`)).status, 204);
    await closed;
    t.match(text, /"StatusCode":137/, 'then the exit code');
    t.equal((await daemon.request('DELETE', `/containers/${waited}`)).status, 204);
  });

  await t.test('nothing is left behind: no session directory, no session conmon', async (t) => {
    await eventually(async () => (readdirSync(sessionsDir).length === 0 ? true : undefined), 20_000).catch(
      () => undefined,
    );
    t.same(existsSync(sessionsDir) ? readdirSync(sessionsDir) : [], [], 'no session directory left');
    const monitors = readdirSync('/proc').filter((entry) => {
      if (!/^\d+$/.test(entry)) return false;
      try {
        const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
        return cmdline.includes('conmon') && cmdline.includes(sessionsDir) && alive(Number(entry));
      } catch {
        return false;
      }
    });
    t.same(monitors, [], 'no session conmon still runs');
    t.equal((await daemon.request('DELETE', `/containers/${id}?force=true`)).status, 204);
  });
});
