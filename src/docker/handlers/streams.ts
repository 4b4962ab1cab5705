import { dockerErrorFor } from '../docker-errors.js';
import { PeerStream } from '../../peer-stream.js';
import { DOCKER_API_VERSION } from '../docker-app.js';
import type { DockerContext, Query } from '../docker-context.js';
import { DockerError, notImplemented } from '../docker-errors.js';
import { resolveContainer } from '../docker-ids.js';
import { openRawStream } from '../docker-stream.js';
import { first, queryBool, idParam, timeParam } from '../translate/params.js';
import { logFrames, endRawStream } from './exec-support.js';
import { attachTerminal } from './container-terminal.js';
import type { FastifyInstance } from 'fastify';
import { PassThrough } from 'node:stream';

/** wait, logs and attach: the long-lived answers, each carried by a PeerStream that ends with its client. */
export async function registerStreamRoutes(app: FastifyInstance, context: DockerContext): Promise<void> {
  const { containers, logs } = context;
  app.post('/containers/:id/wait', { config: { access: 'read' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    const condition = first((request.query as Query).condition) ?? 'not-running';
    if (!['not-running', 'next-exit', 'removed'].includes(condition)) {
      throw new DockerError(400, `invalid condition: "${condition}"; use not-running, next-exit or removed`);
    }
    // next-exit waits for the next stop even of a stopped container: `docker start -a` asks for it before starting.
    const waiter = containers.waitFor(
      id,
      condition === 'removed' ? 'removed' : condition === 'next-exit' ? 'next-exit' : 'stopped',
    );
    // Headers go out at once, as Docker sends them: clients start waiting on the body before the exit.
    reply.hijack();
    const raw = reply.raw;
    const peer = new PeerStream(raw);
    raw.writeHead(200, { 'content-type': 'application/json', 'api-version': DOCKER_API_VERSION });
    raw.flushHeaders();
    peer.signal.addEventListener('abort', () => waiter.cancel(), { once: true });
    try {
      const result = await waiter.result;
      peer.end(JSON.stringify({ StatusCode: result.exitCode ?? 0, Error: null }) + '\n');
    } catch (error) {
      peer.end(JSON.stringify({ StatusCode: -1, Error: { Message: dockerErrorFor(error).message } }) + '\n');
    }
  });

  app.get('/containers/:id/logs', { config: { access: 'read' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    const query = request.query as Query;
    const stdout = queryBool(query.stdout);
    const stderr = queryBool(query.stderr);
    if (!stdout && !stderr) throw new DockerError(400, 'Bad parameters: you must choose at least one stream');
    const tailValue = first(query.tail);
    const lines = tailValue === undefined || tailValue === 'all' ? undefined : Number(tailValue);
    if (lines !== undefined && !Number.isInteger(lines)) {
      throw new DockerError(400, `tail must be "all" or a number of lines; got "${tailValue}"`);
    }
    // Docker reads a negative tail as all of it; testcontainers' log waits send tail=-1.
    const tail = lines !== undefined && lines < 0 ? undefined : lines;
    const since = timeParam(query.since, 'since');
    const until = timeParam(query.until, 'until');
    const timestamps = queryBool(query.timestamps);
    const follow = queryBool(query.follow);
    const body = new PassThrough();
    const peer = new PeerStream(body);
    void logs
      .stream(
        id,
        { follow, tail, since, until, stream: stdout && stderr ? 'all' : stdout ? 'stdout' : 'stderr' },
        logFrames(peer, timestamps),
        peer.orWhen(context.closing),
      )
      .catch(() => undefined)
      .finally(() => peer.end());
    return reply.type('application/vnd.docker.multiplexed-stream').send(body);
  });

  // A terminal container (docker run -t) is attached to through conmon's attach socket, stdin included
  // (container-terminal.ts). Without a terminal: output only, enough for a foreground `docker run` / `docker start
  // -a` to print what the container writes; the CLI attaches before it starts the container, so the stream waits
  // for the start first.
  app.post('/containers/:id/attach', { config: { access: 'admin' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    const query = request.query as Query;
    if (context.deps.attach?.hasTerminal(id)) {
      return attachTerminal(request, reply, context, id);
    }
    if (queryBool(query.stdin)) {
      throw notImplemented(
        'attaching stdin to a container without a TTY (docker run -i without -t, docker attach)',
        'runcd gives stdin to terminal containers: add -t',
      );
    }
    const stdout = queryBool(query.stdout);
    const stderr = queryBool(query.stderr);
    const follow = queryBool(query.stream);
    // Docker's attach shows only what the container writes from now on; `logs=1` replays what it wrote before.
    const history = queryBool(query.logs);
    const upgrade = /\bupgrade\b/i.test(request.headers.connection ?? '');
    reply.hijack();
    const peer = new PeerStream(request.raw.socket);
    openRawStream(peer, upgrade, 'application/vnd.docker.multiplexed-stream');
    if (stdout || stderr) {
      const stream = stdout && stderr ? 'all' : stdout ? 'stdout' : 'stderr';
      const signal = peer.orWhen(context.closing);
      // An exited container has nothing to show from now on until it runs again: `docker start -a` and compose's
      // `up` attach first and start after, and see that run's output.
      const nextRun = follow && !history && containers.get(id).status === 'stopped';
      await (
        nextRun
          ? logs.streamNextRun(id, { follow, stream }, logFrames(peer, false), signal)
          : // From now on starts at the log's end as it is now, before a created container is started: `docker
            // run` attaches first and starts after, and sees the container's first line.
            logs.stream(id, { follow, tail: history ? undefined : 0, stream }, logFrames(peer, false), signal)
      ).catch(() => undefined);
    }
    endRawStream(peer);
  });
}
