import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { eventsOf } from '../helpers/crash-checks.js';
import { dockerCli, startWithDockerSocket } from '../helpers/docker-cli.js';
import { eventually, makeSandbox } from '../helpers/sandbox.js';

// Detaching from an exec with a terminal (issue 15, point 5): the detach keys leave the process running, as
// Docker's exec does, with the real docker CLI in a pseudo-terminal (util-linux `script`) and runcd's WebSocket
// session; the process's exit code is still recorded when it ends, and nothing of the session is left then.
// A plain disconnect still ends the process.
const sandbox = makeSandbox(t, 'xdet');
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

/** The session conmons of this sandbox still running. */
function sessionMonitors(): string[] {
  return readdirSync('/proc').filter((entry) => {
    if (!/^\d+$/.test(entry)) return false;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      return cmdline.includes('conmon') && cmdline.includes(sessionsDir) && alive(Number(entry));
    } catch {
      return false;
    }
  });
}

/** A plain request on the Docker socket: the status and the body text. */
function dockerRequest(
  socketPath: string,
  method: string,
  path: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.on('error', reject);
    socket.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
      resolve({ status, text: text.slice(text.indexOf('\r\n\r\n') + 4) });
    });
    socket.write(
      `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
    );
  });
}

/** A process that waits for its release file (in the container's writable /dev/shm), then exits 7. */
const waiter = (name: string) =>
  `echo ready-${name}; while [ ! -e /dev/shm/${name} ]; do sleep 0.1; done; exit 7`;

async function leftNothing(t: Test): Promise<void> {
  await eventually(async () => (readdirSync(sessionsDir).length === 0 ? true : undefined), 20_000).catch(
    () => undefined,
  );
  t.same(readdirSync(sessionsDir), [], 'no session directory left');
  t.same(sessionMonitors(), [], 'no session conmon left');
}

t.test('detach keys leave an exec running; its exit code is recorded at its end', async (t) => {
  const { daemon, dockerSocket } = await startWithDockerSocket(t, sandbox);
  const created = await daemon.request('POST', '/containers', {
    id,
    bundle: sandbox.bundle('c'),
    start: true,
  });
  t.equal(created.status, 201);
  const env = { ...process.env, DOCKER_HOST: `unix://${dockerSocket}` };
  const execsRunning = async () => {
    const inspected = await dockerCli(dockerSocket, 'inspect', '-f', '{{json .ExecIDs}}', id);
    return JSON.parse(inspected.stdout) as string[] | null;
  };
  const inspectExec = async (execId: string) =>
    JSON.parse((await dockerRequest(dockerSocket, 'GET', `/v1.50/exec/${execId}/json`)).text) as {
      Running: boolean;
      ExitCode: number | null;
      Pid: number;
    };

  /** `docker exec -it` in a terminal; types `keys` once the process printed it is ready. */
  const detachWithCli = async (t: Test, name: string, options: string[], keys: string) => {
    const command = `exec docker exec -it ${options.join(' ')} ${id} sh -c '${waiter(name)}'`;
    const terminal = spawn('script', ['-qec', command, '/dev/null'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env,
    });
    let screen = '';
    terminal.stdout.on('data', (chunk: Buffer) => (screen += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => terminal.on('exit', (code) => resolve(code)));
    t.teardown(() => {
      terminal.kill('SIGKILL');
    });
    await eventually(async () => (screen.includes(`ready-${name}`) ? true : undefined), 15_000);
    terminal.stdin.write(keys);
    return { exited, screen: () => screen, type: (more: string) => terminal.stdin.write(more) };
  };

  await t.test('docker exec -it, then ctrl-p ctrl-q: the CLI leaves, the process runs on', async (t) => {
    t.equal(await execsRunning(), null, 'no exec runs yet (ExecIDs is null)');
    // A ctrl-p not followed by ctrl-q is typed on, as Docker's escape proxy does.
    const cli = await detachWithCli(t, 'go-default', [], '\x10x\x10\x11');
    t.equal(await cli.exited, 0, 'the CLI exits 0 after a detach, as with Docker');
    const [execId] = (await execsRunning()) ?? [];
    t.ok(execId, 'the exec is still listed in the container (ExecIDs)');
    const running = await inspectExec(execId!);
    t.match(running, { Running: true, ExitCode: null }, 'GET /exec/ID/json: running, no exit code yet');
    t.ok(alive(running.Pid), `its process (pid ${running.Pid}) runs`);
    const ps = await dockerCli(dockerSocket, 'exec', id, 'ps');
    t.match(ps.stdout, /go-default/, 'docker exec ps shows it in the container');
    t.equal((await dockerCli(dockerSocket, 'exec', id, 'touch', '/dev/shm/go-default')).code, 0);
    await eventually(async () => ((await inspectExec(execId!)).Running ? undefined : true), 15_000);
    t.match(
      await inspectExec(execId!),
      { Running: false, ExitCode: 7 },
      'its exit code is recorded at its end',
    );
    t.equal(await execsRunning(), null, 'and it is no longer listed');
    await leftNothing(t);
  });

  await t.test(
    'docker exec -it --detach-keys ctrl-a,d: those keys detach, the default ones do not',
    async (t) => {
      const cli = await detachWithCli(t, 'go-custom', ['--detach-keys', 'ctrl-a,d'], '\x10\x11');
      const stillAttached = await Promise.race([
        cli.exited.then(() => false),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 1_000)),
      ]);
      t.ok(stillAttached, 'ctrl-p ctrl-q went to the process: the CLI is still attached');
      cli.type('\x01d');
      t.equal(await cli.exited, 0, 'ctrl-a d detached');
      const [execId] = (await execsRunning()) ?? [];
      t.ok(execId, 'the exec runs on');
      t.equal((await dockerCli(dockerSocket, 'exec', id, 'touch', '/dev/shm/go-custom')).code, 0);
      await eventually(async () => ((await inspectExec(execId!)).Running ? undefined : true), 15_000);
      t.match(await inspectExec(execId!), { Running: false, ExitCode: 7 }, 'and its exit code is recorded');
      const bad = await dockerCli(dockerSocket, 'exec', '-i', '--detach-keys', 'ctrl-9', id, 'true');
      t.not(bad.code, 0, 'unknown detach keys are refused');
      t.match(bad.stderr, /detach key/i, 'by name');
    },
  );

  await t.test(
    'runcd WebSocket session: the detach keys leave it running, a plain close ends it',
    async (t) => {
      const open = (query: string) => {
        const ws = new WebSocket(`ws+unix://${sandbox.socket}:/containers/${id}/exec/session?${query}`);
        const controls: Array<Record<string, unknown>> = [];
        let output = '';
        ws.on('message', (data: Buffer, binary: boolean) => {
          if (binary) output += data.subarray(1).toString();
          else controls.push(JSON.parse(data.toString()) as Record<string, unknown>);
        });
        ws.on('error', () => undefined);
        const closed = new Promise<{ code: number; reason: string }>((resolve) =>
          ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
        );
        const started = eventually(
          async () => controls.find((control) => control.type === 'started') as { pid: number } | undefined,
          15_000,
        );
        return { ws, controls, closed, started, output: () => output };
      };
      const since = new Date().toISOString();
      const args = (name: string) => `tty=true&args=sh&args=-c&args=${encodeURIComponent(waiter(name))}`;

      const detaching = open(args('go-ws'));
      const { pid } = await detaching.started;
      await eventually(async () => (detaching.output().includes('ready-go-ws') ? true : undefined), 10_000);
      detaching.ws.send(Buffer.from([0x10, 0x11]), { binary: true });
      const closed = await detaching.closed;
      t.same(detaching.controls.at(-1), { type: 'detached' }, 'a detached frame');
      t.same(closed, { code: 1000, reason: 'detached' }, 'then a normal close');
      await new Promise((resolve) => setTimeout(resolve, 500));
      t.ok(alive(pid), 'the process runs on with nobody attached');

      const custom = open(`${args('go-ws2')}&detachKeys=${encodeURIComponent('ctrl-x,x')}`);
      const customPid = (await custom.started).pid;
      await eventually(async () => (custom.output().includes('ready-go-ws2') ? true : undefined), 10_000);
      custom.ws.send(Buffer.from([0x10, 0x11]), { binary: true });
      custom.ws.send(Buffer.from([0x18, 0x78]), { binary: true });
      t.same((await custom.closed).reason, 'detached', 'detachKeys=ctrl-x,x detaches');
      t.ok(alive(customPid), 'and leaves its process running');

      const pipe = open(`args=sh&args=-c&args=${encodeURIComponent(waiter('go-pipe'))}`);
      const pipePid = (await pipe.started).pid;
      pipe.ws.send(Buffer.from([0x10, 0x11]), { binary: true });
      await new Promise((resolve) => setTimeout(resolve, 300));
      t.equal(pipe.ws.readyState, WebSocket.OPEN, 'without a terminal the keys are plain input (no detach)');
      pipe.ws.terminate();
      await eventually(async () => (alive(pipePid) ? undefined : true), 15_000).catch(() => undefined);
      t.notOk(alive(pipePid), 'a plain disconnect still ends the process');

      const refused = await new Promise<number>((resolve) => {
        const ws = new WebSocket(
          `ws+unix://${sandbox.socket}:/containers/${id}/exec/session?${args('x')}&detachKeys=ctrl-9`,
        );
        ws.on('unexpected-response', (_request, response) => {
          resolve(response.statusCode ?? 0);
          response.resume();
          ws.terminate();
        });
        ws.on('open', () => {
          resolve(101);
          ws.terminate();
        });
        ws.on('error', () => undefined);
      });
      t.equal(refused, 400, 'unknown detach keys: 400 before any upgrade');

      for (const name of ['go-ws', 'go-ws2']) {
        t.equal(
          (await daemon.request('POST', `/containers/${id}/exec`, { args: ['touch', `/dev/shm/${name}`] }))
            .status,
          200,
        );
      }
      await eventually(async () => (alive(pid) || alive(customPid) ? undefined : true), 15_000);
      const exits = await eventually(async () => {
        const events = (await eventsOf(daemon, since, [id])).filter(
          (event) => event.type === 'exec' && /go-ws/.test(String(event.attributes?.command ?? '')),
        );
        return events.length >= 2 ? events : undefined;
      }, 15_000);
      t.same(
        exits.map((event) => event.attributes?.exitCode),
        [7, 7],
        'each detached process exit code is in its exec event',
      );
      await leftNothing(t);
    },
  );

  t.equal((await daemon.request('DELETE', `/containers/${id}?force=true`)).status, 204);
  t.ok(existsSync(sessionsDir));
});
