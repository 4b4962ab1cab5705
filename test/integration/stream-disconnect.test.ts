import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import type { Container } from '../../src/schemas/container.js';
import { startWithDockerSocket } from '../helpers/docker-cli.js';
import { eventually, makeSandbox } from '../helpers/sandbox.js';

/**
 * Clients that leave a stream in every way a real one can (closing after the first byte, resetting the
 * connection while runcd writes, never reading at all) on every streaming route of both sockets. runcd must keep
 * answering, stop the work behind the stream, and not grow with what the client does not read.
 */

type Misbehaviour = 'close after the first byte' | 'reset mid-write' | 'never read';
const MISBEHAVIOURS: Misbehaviour[] = ['close after the first byte', 'reset mid-write', 'never read'];

/** How long a never-reading client holds its stream open while runcd's RSS is sampled. */
const NEVER_READ_HOLD_MS = 2_000;
/** Growth of runcd's RSS a misbehaving client may cause (generous: the log and exec here produce far more). */
const RSS_GROWTH_BOUND_KIB = 150 * 1024;

function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
}

function inotifyInstances(pid: number): number {
  let count = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:inotify') count++;
    } catch {
      // closed while we looked
    }
  }
  return count;
}

interface StreamRequest {
  socket: string;
  method: string;
  path: string;
  body?: unknown;
  /** Ask for a raw stream as the docker CLI does (`Connection: Upgrade`, `Upgrade: tcp`). */
  upgrade?: boolean;
  headers?: string[];
}

/**
 * Opens the stream with a raw socket and misbehaves; returns the peak RSS of the daemon seen meanwhile (sampled
 * every 20 ms, never timed) and the bytes received.
 */
async function misbehave(
  request: StreamRequest,
  how: Misbehaviour,
  pid: number,
): Promise<{ peakKiB: number; received: number }> {
  const payload = request.body === undefined ? '' : JSON.stringify(request.body);
  const head = [
    `${request.method} ${request.path} HTTP/1.1`,
    'Host: localhost',
    ...(request.upgrade ? ['Connection: Upgrade', 'Upgrade: tcp'] : []),
    ...(request.headers ?? []),
    ...(payload ? ['Content-Type: application/json', `Content-Length: ${Buffer.byteLength(payload)}`] : []),
    '',
    '',
  ].join('\r\n');
  let peakKiB = rssKiB(pid);
  const sampler = setInterval(() => (peakKiB = Math.max(peakKiB, rssKiB(pid))), 20);
  let received = 0;
  let resetting = false;
  try {
    await new Promise<void>((resolve, reject) => {
      const socket: Socket = connect(request.socket);
      socket.on('error', () => undefined);
      socket.on('close', () => resolve());
      socket.write(head + payload);
      if (how === 'never read') {
        // Nothing is read: the kernel's socket buffer fills, then whatever runcd still writes stays in runcd.
        socket.pause();
        setTimeout(() => socket.destroy(), NEVER_READ_HOLD_MS);
        return;
      }
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (how === 'close after the first byte') socket.destroy();
        else if (!resetting) {
          // A unix socket has no RST; closing it with unread data queued does the same to the writer, whose
          // next read or write fails with ECONNRESET (Linux's unix_release_sock). So: stop reading, let runcd's
          // writes queue up, then close.
          resetting = true;
          socket.pause();
          setTimeout(() => socket.destroy(), 100);
        }
      });
      socket.setTimeout(30_000, () => {
        socket.destroy();
        reject(new Error(`no byte came from ${request.method} ${request.path}`));
      });
    });
  } finally {
    clearInterval(sampler);
  }
  return { peakKiB, received };
}

t.test('a client leaving a stream never takes runcd down, nor makes it grow', async (t) => {
  const sandbox = makeSandbox(t, 'sdisc');
  const { daemon, dockerSocket } = await startWithDockerSocket(t, sandbox);
  const pid = daemon.pid()!;

  // quiet: a target for exec, stats and wait. chatty: writes to its log all the time (bounded, so the sandbox's
  // disk does not fill: ~1.4 MB/s).
  const quiet = sandbox.id('quiet');
  const chatty = sandbox.id('chatty');
  const line = 'x'.repeat(70);
  for (const [id, args] of [
    [quiet, ['sleep', '999999']],
    [chatty, ['sh', '-c', `while true; do yes ${line} | head -n 2000; usleep 100000; done`]],
  ] as const) {
    const created = await daemon.request<Container>('POST', '/containers', {
      id,
      bundle: sandbox.bundle(id, [...args]),
      start: true,
    });
    t.equal(created.status, 201, JSON.stringify(created.body));
  }

  const stillAnswering = async (t: Test, what: string) => {
    t.equal(daemon.exitStatus(), undefined, `runcd still runs after ${what}`, {
      output: daemon.output.slice(-1500),
    });
    if (daemon.exitStatus() !== undefined) t.bailout('runcd died');
    t.equal((await daemon.request('GET', '/healthz')).status, 200, `healthz answers after ${what}`);
    const exec = await daemon.request<{ exitCode: number; stdout: string }>(
      'POST',
      `/containers/${quiet}/exec`,
      { args: ['echo', 'alive'] },
    );
    t.equal(exec.body.stdout, 'alive\n', `a lifecycle call works after ${what}`);
  };

  const native = sandbox.socket;
  const routes: Array<{ name: string; request: () => Promise<StreamRequest> }> = [
    {
      name: 'native logs follow',
      request: async () => ({
        socket: native,
        method: 'GET',
        path: `/containers/${chatty}/logs?follow=true`,
      }),
    },
    {
      name: 'native events (NDJSON)',
      request: async () => ({ socket: native, method: 'GET', path: '/events?since=1970-01-01T00:00:00Z' }),
    },
    {
      name: 'native events (SSE)',
      request: async () => ({
        socket: native,
        method: 'GET',
        path: '/events?since=1970-01-01T00:00:00Z',
        headers: ['Accept: text/event-stream'],
      }),
    },
    {
      name: 'native stats stream',
      request: async () => ({
        socket: native,
        method: 'GET',
        path: `/containers/${quiet}/stats?stream=true&interval=1`,
      }),
    },
    {
      name: 'native wait',
      request: async () => ({ socket: native, method: 'POST', path: `/containers/${quiet}/wait` }),
    },
    {
      name: 'docker exec start',
      request: async () => {
        const created = await dockerRequest(dockerSocket, 'POST', `/v1.50/containers/${quiet}/exec`, {
          Cmd: ['sh', '-c', `while true; do echo ${line}; done`],
          AttachStdout: true,
          AttachStderr: true,
        });
        const id = (JSON.parse(created) as { Id: string }).Id;
        return {
          socket: dockerSocket,
          method: 'POST',
          path: `/v1.50/exec/${id}/start`,
          body: { Detach: false, Tty: false },
          upgrade: true,
        };
      },
    },
    {
      name: 'docker attach',
      request: async () => ({
        socket: dockerSocket,
        method: 'POST',
        path: `/v1.50/containers/${chatty}/attach?stream=1&stdout=1&stderr=1&logs=1`,
        upgrade: true,
      }),
    },
    {
      name: 'docker logs follow',
      request: async () => ({
        socket: dockerSocket,
        method: 'GET',
        path: `/v1.50/containers/${chatty}/logs?follow=1&stdout=1&stderr=1`,
      }),
    },
    {
      name: 'docker events',
      request: async () => ({ socket: dockerSocket, method: 'GET', path: '/v1.50/events?since=1' }),
    },
    {
      name: 'docker stats stream',
      request: async () => ({
        socket: dockerSocket,
        method: 'GET',
        path: `/v1.50/containers/${quiet}/stats?stream=1`,
      }),
    },
    {
      // The container's whole rootfs as a tar (busybox: ~1 MiB, several socket buffers' worth).
      name: 'docker export',
      request: async () => ({
        socket: dockerSocket,
        method: 'GET',
        path: `/v1.50/containers/${quiet}/export`,
      }),
    },
    {
      name: 'docker wait',
      request: async () => ({
        socket: dockerSocket,
        method: 'POST',
        path: `/v1.50/containers/${quiet}/wait`,
      }),
    },
  ];

  const inotifyBefore = inotifyInstances(pid);
  for (const route of routes) {
    for (const how of MISBEHAVIOURS) {
      await t.test(`${route.name}: a client that does "${how}"`, async (t) => {
        const before = rssKiB(pid);
        const { peakKiB } = await misbehave(await route.request(), how, pid);
        await stillAnswering(t, `${route.name} / ${how}`);
        t.ok(
          peakKiB - before < RSS_GROWTH_BOUND_KIB,
          `RSS grew by ${peakKiB - before} KiB (bound ${RSS_GROWTH_BOUND_KIB})`,
        );
      });
    }
  }

  await t.test('Ctrl-C on docker exec of an endless writer, and a killed docker attach', async (t) => {
    // `docker attach` without signal proxying ignores SIGINT and SIGTERM: it is killed, as in the issue.
    for (const [signal, args] of [
      ['SIGINT', ['exec', quiet, 'sh', '-c', `while true; do echo ${line}; done`]],
      ['SIGKILL', ['attach', '--no-stdin', '--sig-proxy=false', chatty]],
    ] as const) {
      const cli = spawn('docker', [...args], {
        env: { ...process.env, DOCKER_HOST: `unix://${dockerSocket}` },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      await new Promise((resolve) => cli.stdout.once('data', resolve));
      const exited = new Promise((resolve) => cli.once('exit', resolve));
      cli.kill(signal);
      await exited;
      await stillAnswering(t, `${signal} to docker ${args[0]}`);
    }
  });

  await t.test('docker exec start: a client that leaves while its body is being read', async (t) => {
    const created = await dockerRequest(dockerSocket, 'POST', `/v1.50/containers/${quiet}/exec`, {
      Cmd: ['true'],
      AttachStdout: true,
    });
    const id = (JSON.parse(created) as { Id: string }).Id;
    const closedByRuncd = await new Promise<boolean>((resolve) => {
      const socket = connect(dockerSocket);
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(true));
      socket.setTimeout(20_000, () => {
        socket.destroy();
        resolve(false);
      });
      // Half the body promised, then the client's side is closed: the request can never be complete.
      socket.end(
        `POST /v1.50/exec/${id}/start HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n` +
          'Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{"Detach":',
      );
    });
    t.ok(closedByRuncd, 'runcd closes the connection instead of keeping it forever');
    await stillAnswering(t, 'a half-sent exec start');
  });

  await t.test('the work behind the streams stopped', async (t) => {
    // Every exec that lost its reader had its output pipes closed: the loops die of SIGPIPE at their next write.
    await eventually(async () => {
      const processes = await daemon.request<Array<{ command: string }>>(
        'GET',
        `/containers/${quiet}/processes`,
      );
      return processes.body.every((each) => !each.command.includes('while true')) ? true : undefined;
    }, 20_000);
    t.pass('no exec whose client left is still writing');
    // Each log follow holds an inotify watch on the container's directory until it ends.
    await eventually(async () => (inotifyInstances(pid) <= inotifyBefore ? true : undefined), 20_000);
    t.pass('every log follow ended its file watch');
  });
});

/** A plain request on the Docker socket; answers the body text. */
function dockerRequest(socketPath: string, method: string, path: string, body?: unknown): Promise<string> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? '' : JSON.stringify(body);
    const socket = connect(socketPath);
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.on('error', reject);
    socket.on('close', () => resolve(text.slice(text.indexOf('\r\n\r\n') + 4)));
    socket.write(
      [
        `${method} ${path} HTTP/1.1`,
        'Host: localhost',
        'Connection: close',
        'Content-Type: application/json',
        `Content-Length: ${Buffer.byteLength(payload)}`,
        '',
        payload,
      ].join('\r\n'),
    );
  });
}
