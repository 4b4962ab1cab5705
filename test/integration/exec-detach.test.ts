import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { eventsOf } from '../helpers/crash-checks.js';
import { dockerCli, startWithDockerSocket } from '../helpers/docker-cli.js';
import { dockerRequest, hijackedStart } from '../helpers/docker-hijack.js';
import { eventually, makeSandbox } from '../helpers/sandbox.js';

// Detaching from an exec with a terminal (issue 15, point 5). runcd scans a terminal's input for the detach keys,
// as Docker's engine does: a client that sends them (runcd's WebSocket session, a raw hijack, dockerode) leaves its
// process running, whose exit code is recorded when it ends, with nothing of the session left then. The real
// docker CLI (in a pseudo-terminal, util-linux `script`) scans the keys itself and only closes the connection,
// which to runcd is a plain disconnect: the process is hung up, as any client that leaves.
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
  const since = new Date().toISOString();
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

  await t.test(
    'docker exec -it, then ctrl-p ctrl-q: the CLI detaches by itself, runcd sees a close',
    async (t) => {
      t.equal(await execsRunning(), null, 'no exec runs yet (ExecIDs is null)');
      const cli = await detachWithCli(t, 'go-default', [], '\x10\x11');
      // The docker CLI scans a terminal's keys itself (moby/term's escape proxy): it swallows the sequence, prints
      // this and exits 1, as against Docker's engine. runcd never receives the keys, only a closed connection,
      // which it cannot tell from a client that went away: the process is hung up (README, "Per client").
      t.equal(await cli.exited, 1, 'the CLI leaves (exit 1 after a detach, as against Docker)');
      t.match(cli.screen(), /read escape sequence/, 'with its detach message');
      const exits = await eventually(async () => {
        const events = (await eventsOf(daemon, since, [id])).filter(
          (event) =>
            event.type === 'exec' && /ready-go-default/.test(String(event.attributes?.command ?? '')),
        );
        return events.length > 0 ? events : undefined;
      }, 20_000);
      t.equal(
        exits[0]!.attributes?.exitCode,
        129,
        'the process was hung up (SIGHUP), its exit code recorded',
      );
      t.equal(await execsRunning(), null, 'and it is no longer listed');
      await leftNothing(t);
    },
  );

  await t.test(
    'docker exec -it --detach-keys ctrl-a,d: those keys detach the CLI, the default ones are typed on',
    async (t) => {
      const cli = await detachWithCli(t, 'go-custom', ['--detach-keys', 'ctrl-a,d'], '\x10\x11');
      const stillAttached = await Promise.race([
        cli.exited.then(() => false),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 1_000)),
      ]);
      t.ok(stillAttached, 'ctrl-p ctrl-q went to the process: the CLI is still attached');
      cli.type('\x01d');
      t.equal(await cli.exited, 1, 'ctrl-a d detached');
      t.match(cli.screen(), /read escape sequence/);
      const bad = await dockerCli(dockerSocket, 'exec', '-i', '--detach-keys', 'ctrl-9', id, 'true');
      t.not(bad.code, 0, 'unknown detach keys are refused');
      t.match(bad.stderr, /detach key/i, 'by name');
      await leftNothing(t);
    },
  );

  await t.test(
    'a hijacked client that sends the detach keys: the exec runs on, its exit recorded',
    async (t) => {
      // What dockerode or any client without the CLI's own scanner sends: runcd scans a terminal's input as
      // Docker's engine does, ends the stream and leaves the process running.
      const created = await dockerRequest(dockerSocket, 'POST', `/v1.50/containers/${id}/exec`, {
        Cmd: ['sh', '-c', waiter('go-raw')],
        Tty: true,
        AttachStdin: true,
        AttachStdout: true,
        DetachKeys: 'ctrl-x,y',
      });
      t.equal(created.status, 201);
      const execId = (JSON.parse(created.text) as { Id: string }).Id;
      const { socket, rest } = await hijackedStart(dockerSocket, execId, { Detach: false, Tty: true });
      let output = rest.toString();
      socket.on('data', (chunk: Buffer) => (output += chunk.toString()));
      socket.on('error', () => undefined);
      const ended = new Promise<void>((resolve) => socket.on('end', () => resolve()));
      socket.resume();
      await eventually(async () => (output.includes('ready-go-raw') ? true : undefined), 15_000);
      // A ctrl-x not followed by y is typed on, as Docker's escape proxy does.
      socket.write(Buffer.from([0x18, 0x61, 0x18, 0x79]));
      await ended;
      socket.destroy();
      t.pass('runcd ended the stream after the keys');
      t.same(await execsRunning(), [execId], 'the exec is still listed in the container (ExecIDs)');
      const running = await inspectExec(execId);
      t.match(running, { Running: true, ExitCode: null }, 'GET /exec/ID/json: running, no exit code yet');
      t.ok(alive(running.Pid), `its process (pid ${running.Pid}) runs with nobody attached`);
      const ps = await dockerCli(dockerSocket, 'exec', id, 'ps');
      t.match(ps.stdout, /go-raw/, 'docker exec ps shows it in the container');
      t.equal((await dockerCli(dockerSocket, 'exec', id, 'touch', '/dev/shm/go-raw')).code, 0);
      await eventually(async () => ((await inspectExec(execId)).Running ? undefined : true), 15_000);
      t.match(
        await inspectExec(execId),
        { Running: false, ExitCode: 7 },
        'its exit code is recorded at its end',
      );
      t.equal(await execsRunning(), null, 'and it is no longer listed');
      await leftNothing(t);
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
          (event) => event.type === 'exec' && /ready-go-ws/.test(String(event.attributes?.command ?? '')),
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
