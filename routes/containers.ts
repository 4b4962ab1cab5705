/*
 * The container resource's routes, one declaration per operation; most of the length is their schemas and
 * OpenAPI descriptions, and each handler is a few lines calling the lifecycle.
 */
import { PassThrough, Readable } from 'node:stream';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ContainerCreation } from '../src/creation/container-creation.js';
import type { ContainerService } from '../src/lifecycle/container-service.js';
import type { LogService } from '../src/lifecycle/log-service.js';
import { CreateContainerRequest } from '../src/schemas/bundle.js';
import { ContainerIdParams, ProblemSchema, QueryBoolean } from '../src/schemas/common.js';
import {
  Container,
  ContainerProcess,
  ContainerStats,
  DeleteContainerQuery,
  ExecBody,
  execBodyOf,
  ExecStdinQuery,
  ExecResult,
  KillContainerQuery,
  ListContainersQuery,
  LogLine,
  LogsQuery,
  RestartQuery,
  StatsQuery,
  StopQuery,
  WaitQuery,
  WaitResult,
} from '../src/schemas/container.js';
import { RevisionedBodies, sendJsonBytes } from '../src/response-serializer.js';
import { PeerStream } from '../src/peer-stream.js';
import { abortOnClose, asStreamedBody, wantsNdjson } from './streaming.js';

export interface ContainerRoutesOptions {
  containers: ContainerService;
  logs: LogService;
  /** Creates go through it: it resolves the managed-bundle forms of the body to the bundle runc runs. */
  creation: ContainerCreation;
}

const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((status) => [status, ProblemSchema]));

const containerRoutes: FastifyPluginAsyncZod<ContainerRoutesOptions> = async (
  app,
  { containers, logs, creation },
) => {
  const listBodies = new RevisionedBodies(z.array(Container));

  app.post(
    '/containers',
    {
      config: { access: 'admin' },
      // A container's labels (or a bundle's spec) can be this large; every other body stays small.
      bodyLimit: 256 * 1024,
      schema: {
        operationId: 'createContainer',
        tags: ['containers'],
        summary:
          'Create a container from a bundle path, a managed bundle (bundleId) or a private one (spec + rootfsFrom) (runc create; with start: true, runc run)',
        body: CreateContainerRequest,
        response: { 201: Container, ...errors(400, 403, 404, 409, 422) },
      },
    },
    async (request, reply) => {
      const container = await creation.create(request.body);
      return reply.code(201).header('location', `/containers/${container.id}`).send(container);
    },
  );

  app.get(
    '/containers',
    {
      config: { access: 'read' },
      schema: {
        operationId: 'listContainers',
        tags: ['containers'],
        summary: 'List containers (runc list)',
        querystring: ListContainersQuery,
        response: { 200: z.array(Container), ...errors(400) },
      },
    },
    async (request, reply) => {
      const { status, label } = request.query;
      const body = listBodies.get(JSON.stringify([status, label]), containers.viewRevision, () =>
        containers.list({ status, labels: label }),
      );
      return sendJsonBytes(reply, body);
    },
  );

  app.get(
    '/containers/:id',
    {
      config: { access: 'read' },
      schema: {
        operationId: 'getContainer',
        tags: ['containers'],
        summary: "Container state (runc state), from runcd's view; refresh=true asks runc itself",
        params: ContainerIdParams,
        querystring: z.object({ refresh: QueryBoolean.default(false) }),
        response: { 200: Container, ...errors(400, 404) },
      },
    },
    async (request) =>
      request.query.refresh ? containers.refresh(request.params.id) : containers.get(request.params.id),
  );

  app.post(
    '/containers/:id/start',
    {
      config: { access: 'operate' },
      schema: {
        operationId: 'startContainer',
        tags: ['containers'],
        summary: 'Start a created container (runc start)',
        params: ContainerIdParams,
        response: { 200: Container, ...errors(400, 404, 409) },
      },
    },
    async (request) => containers.start(request.params.id),
  );

  app.post(
    '/containers/:id/exec',
    {
      config: { access: 'admin' },
      schema: {
        operationId: 'execInContainer',
        tags: ['containers'],
        summary: 'Run a process in a running container and return its exit code and output (runc exec)',
        params: ContainerIdParams,
        body: ExecBody,
        response: { 200: ExecResult, ...errors(400, 404, 409) },
      },
    },
    async (request) => containers.exec(request.params.id, request.body),
  );

  // Its own context: only this route takes raw bytes (the process's stdin) instead of JSON.
  await app.register(async (context) => {
    const raw = context.withTypeProvider<ZodTypeProvider>();
    raw.addContentTypeParser(EXEC_STDIN_MEDIA_TYPES, (_request, payload, done) => done(null, payload));
    raw.post(
      '/containers/:id/exec/stdin',
      {
        // The body is streamed into the process as it reads, never held: its size is the process's business.
        config: { access: 'admin' },
        schema: {
          operationId: 'execWithStdin',
          tags: ['containers'],
          summary:
            'Run a process with the request body as its stdin (EOF at its end) and return its exit code and output',
          consumes: EXEC_STDIN_MEDIA_TYPES,
          params: ContainerIdParams,
          querystring: ExecStdinQuery,
          body: z
            .unknown()
            .meta({ type: 'string', format: 'binary' })
            .describe('Bytes for the process to read; empty or absent gives it EOF at once')
            .optional(),
          response: { 200: ExecResult, ...errors(400, 404, 409) },
        },
      },
      async (request) => {
        const body = request.body;
        const stdin = isReadable(body) ? body : Readable.from([]);
        const result = await containers.exec(request.params.id, execBodyOf(request.query), undefined, stdin);
        // A process may end without reading all of its stdin. A client sending a body of known length (curl
        // --data-binary @FILE) reads the answer only once it has sent it all, so the rest is read and dropped
        // (bounded); a streamed body (runcctl's piped stdin, which may never end) gets the answer at once.
        if (request.headers['content-length'] !== undefined) await discardRest(stdin);
        return result;
      },
    );
  });

  app.post(
    '/containers/:id/kill',
    {
      config: { access: 'operate' },
      schema: {
        operationId: 'killContainer',
        tags: ['containers'],
        summary: 'Send a signal to the container init (runc kill); SIGKILL answers once the exit is recorded',
        params: ContainerIdParams,
        querystring: KillContainerQuery,
        response: { 204: z.null().describe('Signal delivered'), ...errors(400, 404, 409) },
      },
    },
    async (request, reply) => {
      await containers.kill(request.params.id, request.query.signal);
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/containers/:id',
    {
      config: { access: 'admin' },
      schema: {
        operationId: 'deleteContainer',
        tags: ['containers'],
        summary:
          'Delete a stopped or created container (runc delete); force=true kills a running or paused one first',
        params: ContainerIdParams,
        querystring: DeleteContainerQuery,
        response: { 204: z.null().describe('Deleted'), ...errors(400, 404, 409) },
      },
    },
    async (request, reply) => {
      await containers.delete(request.params.id, { force: request.query.force });
      return reply.code(204).send(null);
    },
  );
  app.post(
    '/containers/:id/stop',
    {
      config: { access: 'operate' },
      schema: {
        operationId: 'stopContainer',
        tags: ['containers'],
        summary:
          'Send the stop signal, wait up to timeout seconds, then SIGKILL; answers with the stopped container',
        params: ContainerIdParams,
        querystring: StopQuery,
        response: { 200: Container, ...errors(400, 404, 409, 504) },
      },
    },
    async (request) =>
      containers.stop(request.params.id, {
        timeoutSeconds: request.query.timeout,
        signal: request.query.signal,
      }),
  );

  app.post(
    '/containers/:id/restart',
    {
      config: { access: 'operate' },
      schema: {
        operationId: 'restartContainer',
        tags: ['containers'],
        summary: 'Stop if running, then create and start again from the same bundle (same id, new pid)',
        params: ContainerIdParams,
        querystring: RestartQuery,
        response: { 200: Container, ...errors(400, 404, 409, 422, 504) },
      },
    },
    async (request) => containers.restart(request.params.id, { timeoutSeconds: request.query.timeout }),
  );

  app.post(
    '/containers/:id/pause',
    {
      config: { access: 'operate' },
      schema: {
        operationId: 'pauseContainer',
        tags: ['containers'],
        summary: 'Freeze every process of the container (runc pause)',
        params: ContainerIdParams,
        response: { 200: Container, ...errors(400, 404, 409) },
      },
    },
    async (request) => containers.pause(request.params.id),
  );

  app.post(
    '/containers/:id/resume',
    {
      config: { access: 'operate' },
      schema: {
        operationId: 'resumeContainer',
        tags: ['containers'],
        summary: 'Thaw a paused container (runc resume)',
        params: ContainerIdParams,
        response: { 200: Container, ...errors(400, 404, 409) },
      },
    },
    async (request) => containers.resume(request.params.id),
  );

  app.post(
    '/containers/:id/wait',
    {
      config: { access: 'read' },
      schema: {
        operationId: 'waitContainer',
        tags: ['containers'],
        summary:
          'Long-poll until the container stops (or is removed). Headers are sent once the waiter is registered; the body follows when the condition holds. The exit of a deleted container stays available for 10 minutes.',
        params: ContainerIdParams,
        querystring: WaitQuery,
        response: { 200: WaitResult, ...errors(400, 404) },
      },
    },
    async (request, reply) => {
      const waiter = containers.waitFor(request.params.id, request.query.condition);
      // Flush headers now, so a client sees the wait is registered before the container can exit.
      reply.hijack();
      const peer = new PeerStream(reply.raw);
      reply.raw.writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'x-request-id': request.id,
      });
      reply.raw.flushHeaders();
      const abort = abortOnClose(reply);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<z.infer<typeof WaitResult>>((resolve) => {
        if (request.query.timeout !== undefined) {
          timer = setTimeout(
            () => resolve({ exitCode: null, oomKilled: false, finishedAt: null, timedOut: true }),
            request.query.timeout * 1000,
          );
        }
      });
      const aborted = new Promise<undefined>((resolve) =>
        abort.signal.addEventListener('abort', () => resolve(undefined), { once: true }),
      );
      try {
        const result = await Promise.race([waiter.result, timeout, aborted]);
        if (result) peer.end(JSON.stringify(result) + '\n');
        // The client left, or runcd is shutting down: the connection is cut (no body), and the wait can be
        // re-issued against the restarted daemon, which answers at once if the container stopped meanwhile.
        else peer.destroy();
      } finally {
        clearTimeout(timer);
        waiter.cancel();
      }
    },
  );

  app.get(
    '/containers/:id/logs',
    {
      config: { access: 'read' },
      schema: {
        operationId: 'containerLogs',
        tags: ['containers'],
        summary:
          "Container output from conmon's log: text/plain raw lines by default, NDJSON LogLine objects with Accept: application/x-ndjson. With follow=true the stream ends when the container stops.",
        params: ContainerIdParams,
        querystring: LogsQuery,
        response: {
          200: {
            description:
              'Raw lines by default; LogLine objects, one per line, with Accept: application/x-ndjson',
            content: {
              'text/plain': { schema: z.string().describe('One output line per line') },
              'application/x-ndjson': { schema: LogLine },
            },
          },
          ...errors(400, 404),
        },
      },
    },
    async (request, reply) => {
      const ndjson = wantsNdjson(request.headers.accept);
      const { timestamps, ...options } = request.query;
      const body = new PassThrough();
      const peer = new PeerStream(body);
      const stop = peer.orWhen(abortOnClose(reply).signal);
      const done = logs.stream(
        request.params.id,
        options,
        {
          write: (entry) =>
            peer.write(
              ndjson
                ? JSON.stringify(LogLine.parse(entry)) + '\n'
                : timestamps
                  ? `${entry.time} ${entry.line}\n`
                  : `${entry.line}\n`,
            ),
          drained: () => peer.drained(),
        },
        stop,
      );
      // Unknown ids fail before the first byte, so they still get a problem+json 404.
      await Promise.race([done, new Promise((resolve) => setImmediate(resolve))]);
      void done.then(
        () => peer.end(),
        (error: unknown) => body.destroy(error as Error),
      );
      return reply
        .type(ndjson ? 'application/x-ndjson' : 'text/plain; charset=utf-8')
        .send(asStreamedBody(reply, body));
    },
  );

  app.get(
    '/containers/:id/processes',
    {
      config: { access: 'read' },
      schema: {
        operationId: 'containerProcesses',
        tags: ['containers'],
        summary: 'Processes in the container (runc ps), with parent pid, user and command line from /proc',
        params: ContainerIdParams,
        response: { 200: z.array(ContainerProcess), ...errors(400, 404, 409) },
      },
    },
    async (request) => containers.processes(request.params.id),
  );

  app.get(
    '/containers/:id/stats',
    {
      config: { access: 'read' },
      schema: {
        operationId: 'containerStats',
        tags: ['containers'],
        summary:
          'CPU, memory and pids from the container cgroup (runc events --stats); stream=true for NDJSON',
        params: ContainerIdParams,
        querystring: StatsQuery,
        response: {
          200: {
            description: 'One snapshot (application/json), or one per interval, one per line (stream=true)',
            content: {
              'application/json': { schema: ContainerStats },
              'application/x-ndjson': { schema: ContainerStats },
            },
          },
          ...errors(400, 404, 409),
        },
      },
    },
    async (request, reply) => {
      if (!request.query.stream) return containers.stats(request.params.id);
      const first = await containers.stats(request.params.id);
      const body = new PassThrough();
      const peer = new PeerStream(body);
      peer.write(JSON.stringify(first) + '\n');
      void containers
        .streamStats(
          request.params.id,
          request.query.interval,
          // A snapshot is a gauge: a reader that is behind skips one (the next is fresher) rather than making
          // runcd queue them.
          (stats) => {
            if (!peer.behind) peer.write(JSON.stringify(stats) + '\n');
          },
          peer.orWhen(abortOnClose(reply).signal),
        )
        // The response is already streaming: a failure (the container stopped in between, the exec pool is
        // full) can only end it, and must never become an unhandled rejection that takes the daemon down.
        .catch((error: unknown) => request.log.warn({ err: error }, 'stats stream ended early'))
        .finally(() => peer.end());
      return reply.type('application/x-ndjson').send(asStreamedBody(reply, body));
    },
  );
};

export default containerRoutes;

/** What a stdin body may be sent as: raw bytes (curl needs `-H 'Content-Type: application/octet-stream'`). */
const EXEC_STDIN_MEDIA_TYPES = ['application/octet-stream'];

const DISCARD_LIMIT_BYTES = 256 * 1024 * 1024;
const DISCARD_LIMIT_MS = 30_000;

function discardRest(stream: Readable): Promise<void> {
  if (stream.readableEnded || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let dropped = 0;
    const done = () => {
      clearTimeout(timer);
      stream.removeListener('data', count);
      resolve();
    };
    const count = (chunk: Buffer) => {
      dropped += chunk.length;
      if (dropped > DISCARD_LIMIT_BYTES) done();
    };
    const timer = setTimeout(done, DISCARD_LIMIT_MS);
    stream.on('data', count);
    stream.once('end', done);
    stream.once('close', done);
    stream.once('error', done);
    stream.resume();
  });
}

function isReadable(body: unknown): body is Readable {
  return typeof body === 'object' && body !== null && typeof (body as Readable).pipe === 'function';
}
