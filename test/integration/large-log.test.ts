import { execFile } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import type { Container } from '../../src/schemas/container.js';
import { dockerCli, startWithDockerSocket } from '../helpers/docker-cli.js';
import { makeSandbox } from '../helpers/sandbox.js';

/**
 * A container with a 120 MB log: a tail reads it from the end, and neither a tail nor a client that never reads
 * the whole log (or a `docker attach` replaying it) makes runcd's memory follow the size of the log.
 */

const LOG_BYTES = 120 * 1024 * 1024;
/** Growth of runcd's RSS allowed while it serves the log (the log is 120 MB; before, a full read held it all). */
const RSS_GROWTH_BOUND_KIB = 150 * 1024;
const NEVER_READ_HOLD_MS = 3_000;

function rssKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}

/** Runs `action` while sampling the daemon's RSS every 20 ms; answers the peak growth over the start. */
async function rssGrowthDuring(pid: number, action: () => Promise<unknown>): Promise<number> {
  const before = rssKiB(pid);
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssKiB(pid))), 20);
  try {
    await action();
  } finally {
    clearInterval(sampler);
  }
  return Math.max(peak, rssKiB(pid)) - before;
}

/** Asks for a stream and never reads it; closes after a while. */
function neverRead(socketPath: string, head: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.pause();
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
    socket.write(head);
    setTimeout(() => socket.destroy(), NEVER_READ_HOLD_MS);
  });
}

t.test('a 120 MB log: tails from its end, bounded memory for every reader', async (t) => {
  const sandbox = makeSandbox(t, 'biglog');
  const { daemon, dockerSocket } = await startWithDockerSocket(t, sandbox);
  const pid = daemon.pid()!;

  const id = sandbox.id('big');
  const created = await daemon.request<Container>('POST', '/containers', {
    id,
    bundle: sandbox.bundle('big', ['sleep', '999999']),
    start: true,
  });
  t.equal(created.status, 201);

  // The container writes nothing; its log is written here in conmon's k8s-file format (what conmon's `-l
  // k8s-file:` produces, and the file runcd reads), much faster than a container could.
  const log = openSync(join(sandbox.stateDir, 'containers', id, 'ctr.log'), 'a');
  const padding = 'p'.repeat(60);
  let written = 0;
  let index = 0;
  while (written < LOG_BYTES) {
    const lines: string[] = [];
    for (let each = 0; each < 10_000; each++, index++) {
      lines.push(`2026-01-01T00:00:00.000000000Z stdout F line-${index} ${padding}\n`);
    }
    written += writeSync(log, lines.join(''));
  }
  // The end: a stderr line, a stdout line written in two pieces, and one more of each.
  writeSync(
    log,
    [
      '2026-01-01T00:00:01.000000000Z stderr F err-1',
      '2026-01-01T00:00:01.100000000Z stdout P first-',
      '2026-01-01T00:00:01.200000000Z stderr F err-2',
      '2026-01-01T00:00:01.300000000Z stdout F half',
      '2026-01-01T00:00:01.400000000Z stdout F last',
      '',
    ].join('\n'),
  );
  closeSync(log);

  await t.test('tail=5 is the last five lines, whole, and runcd does not grow with the log', async (t) => {
    let body = '';
    const growth = await rssGrowthDuring(pid, async () => {
      body = await daemon.requestText('GET', `/containers/${id}/logs?tail=5`);
    });
    t.equal(body, `line-${index - 1} ${padding}\nerr-1\nerr-2\nfirst-half\nlast\n`);
    t.ok(growth < RSS_GROWTH_BOUND_KIB, `RSS grew by ${growth} KiB serving tail=5 of 120 MB`);
    const stdout = await daemon.requestText('GET', `/containers/${id}/logs?tail=2&stream=stdout`);
    t.equal(stdout, 'first-half\nlast\n');
    const docker = await dockerCli(dockerSocket, 'logs', '--tail', '3', id);
    t.equal(docker.stdout, 'first-half\nlast\n', 'docker logs --tail: stdout');
    t.equal(docker.stderr, 'err-2\n', 'docker logs --tail: stderr');
  });

  await t.test('a client that asks for the whole log and never reads it', async (t) => {
    const growth = await rssGrowthDuring(pid, () =>
      neverRead(sandbox.socket, `GET /containers/${id}/logs HTTP/1.1\r\nHost: localhost\r\n\r\n`),
    );
    t.ok(growth < RSS_GROWTH_BOUND_KIB, `RSS grew by ${growth} KiB`);
    t.equal((await daemon.request('GET', '/healthz')).status, 200);
  });

  await t.test('docker logs without a tail, and a never-reading docker attach with logs=1', async (t) => {
    const growth = await rssGrowthDuring(pid, () =>
      neverRead(
        dockerSocket,
        `POST /v1.50/containers/${id}/attach?stream=1&stdout=1&stderr=1&logs=1 HTTP/1.1\r\nHost: localhost\r\n` +
          'Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n',
      ),
    );
    t.ok(growth < RSS_GROWTH_BOUND_KIB, `RSS grew by ${growth} KiB (never-reading attach, logs=1)`);
    let bytes = 0;
    const full = await rssGrowthDuring(pid, async () => {
      bytes = await dockerLogsBytes(dockerSocket, id);
    });
    const head = '2026-01-01T00:00:00.000000000Z stdout F '.length;
    t.equal(bytes, written - index * head + 'err-1\nerr-2\nfirst-half\nlast\n'.length, 'every byte of it');
    t.ok(full < RSS_GROWTH_BOUND_KIB, `RSS grew by ${full} KiB (docker logs of 120 MB)`);
  });
});

/** `docker logs ID | wc -c`: the CLI's whole output, counted without holding it. */
function dockerLogsBytes(socket: string, id: string): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(
      'sh',
      ['-c', `docker logs ${id} 2>&1 | wc -c`],
      { env: { ...process.env, DOCKER_HOST: `unix://${socket}` }, timeout: 120_000 },
      (error, stdout) => (error ? reject(error) : resolve(Number(stdout.trim()))),
    );
  });
}
