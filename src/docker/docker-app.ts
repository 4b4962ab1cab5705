import { arch, cpus, hostname, release, totalmem } from 'node:os';
import { PassThrough } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { BundleService } from '../bundles/bundle-service.js';
import type { ImageLoader } from '../bundles/image-loader.js';
import type { ContainerService } from '../lifecycle/container-service.js';
import type { ExecOutput } from '../runtime/runc.js';
import { LogService, type LogSink } from '../lifecycle/log-service.js';
import type { Container } from '../schemas/container.js';
import type { ContainerEvent } from '../schemas/events.js';
import { ExecBody } from '../schemas/container.js';
import { DEFAULT_BODY_LIMIT } from '../security/limits.js';
import securityPlugin, { type SecurityOptions } from '../security/security-plugin.js';
import { parseSignal, type Signal } from '../signals.js';
import { RUNCD_VERSION } from '../version.js';
import { DomainError } from '../errors.js';
import { assertAllowed } from '../lifecycle/container-states.js';
import { DockerError, dockerErrorFor, notImplemented } from './docker-errors.js';
import { dockerAnswerFor, type DockerOperation } from './docker-status.js';
import { dockerIdOf, resolveContainer } from './docker-ids.js';
import { frame, openRawStream } from './docker-stream.js';
import { PeerStream } from '../peer-stream.js';
import { routeUpgradeRequestsAsRequests } from './upgrade-requests.js';
import { createFromImage, imageOfBundle, registerImageRoutes } from './docker-images.js';
import { ExecSessions, type ExecSession } from './exec-sessions.js';

/**
 * The Docker Engine API, translated onto runcd's own services: every container operation goes through
 * ContainerService, logs through LogService, events through the EventBus. No second lifecycle lives here.
 */

/** Oldest and newest Docker API versions answered; 1.50 is what docker CLI 28 negotiates. */
export const DOCKER_MIN_API_VERSION = '1.41';
export const DOCKER_API_VERSION = '1.50';
const MIN_MINOR = 41;
const MAX_MINOR = 50;

const IMAGES_MISSING =
  'images are runcd managed bundles, and this Docker listener was built without the bundle service; create containers with the native API (POST /containers on the runcd socket) and drive them with docker';

export interface DockerAppDeps {
  containers: ContainerService;
  /** Managed bundles serve as images; without them, image endpoints and create answer 501. */
  bundles?: BundleService | undefined;
  /** `docker load` (skopeo + umoci); without it, POST /images/load answers 501. */
  imageLoader?: ImageLoader | undefined;
  security: SecurityOptions;
}

interface Query {
  [key: string]: string | string[] | undefined;
}

const versionOf = new WeakMap<object, string>();

export async function buildDockerApp(deps: DockerAppDeps): Promise<FastifyInstance> {
  const { containers } = deps;
  const logs = new LogService(containers);
  const execs = new ExecSessions();
  const app = Fastify({
    logger: false,
    bodyLimit: DEFAULT_BODY_LIMIT,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 2048 },
    // `/v1.50/containers/json` and `/containers/json` are the same route; the version is checked in onRequest.
    rewriteUrl: (request) => {
      const url = request.url ?? '/';
      const match = /^\/v(\d+\.\d+)(\/.*)$/.exec(url);
      if (!match) return url;
      versionOf.set(request, match[1]!);
      return match[2]!;
    },
  });
  routeUpgradeRequestsAsRequests(app.server);
  // Long-lived streams (log follows, attaches, events) end when the server starts closing, so shutdown can finish.
  const closing = new AbortController();
  app.addHook('preClose', async () => closing.abort());
  // Docker clients send empty bodies with Content-Type: application/json (start, stop) and tarballs for imports.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body: Buffer, done) => {
    if (body.length === 0) return done(null, undefined);
    try {
      done(null, JSON.parse(body.toString('utf8')) as unknown);
    } catch {
      done(new DockerError(400, 'request body is not valid JSON'), undefined);
    }
  });
  app.setErrorHandler((error, _request, reply) => {
    const { status, message } = dockerErrorFor(error);
    return sendDockerError(reply, status, message);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    return sendDockerError(reply, 501, notImplemented(`${request.method} ${path}`).message);
  });
  app.addHook('onRequest', async (request) => {
    const version = versionOf.get(request.raw);
    if (version === undefined) return;
    const [major, minor] = version.split('.').map(Number);
    if (major !== 1 || minor! > MAX_MINOR) {
      throw new DockerError(
        400,
        `client version ${version} is too new. Maximum supported API version is ${DOCKER_API_VERSION}`,
      );
    }
    if (minor! < MIN_MINOR) {
      throw new DockerError(
        400,
        `client version ${version} is too old. Minimum supported API version is ${DOCKER_MIN_API_VERSION}, please upgrade your client to a newer version`,
      );
    }
  });
  app.addHook('onSend', async (_request, reply) => {
    reply.header('api-version', DOCKER_API_VERSION);
    reply.header('docker-experimental', 'false');
    reply.header('ostype', 'linux');
    reply.header('server', `runcd/${RUNCD_VERSION}`);
  });
  await app.register(securityPlugin, deps.security);

  // ---- system
  app.get('/_ping', { config: { access: 'read' } }, async (_request, reply) =>
    reply.header('cache-control', 'no-cache').type('text/plain; charset=utf-8').send('OK'),
  );
  app.get('/version', { config: { access: 'read' } }, async () => ({
    Platform: { Name: 'runcd' },
    Components: [
      {
        Name: 'Engine',
        Version: RUNCD_VERSION,
        Details: {
          ApiVersion: DOCKER_API_VERSION,
          MinAPIVersion: DOCKER_MIN_API_VERSION,
          GitCommit: 'runcd',
          GoVersion: `node${process.versions.node}`,
          Os: 'linux',
          Arch: dockerArch(),
          KernelVersion: release(),
          Experimental: 'false',
          BuildTime: '',
        },
      },
    ],
    Version: RUNCD_VERSION,
    ApiVersion: DOCKER_API_VERSION,
    MinAPIVersion: DOCKER_MIN_API_VERSION,
    GitCommit: 'runcd',
    GoVersion: `node${process.versions.node}`,
    Os: 'linux',
    Arch: dockerArch(),
    KernelVersion: release(),
    BuildTime: '',
  }));
  app.get('/info', { config: { access: 'read' } }, async () => {
    const all = containers.list();
    const count = (status: string) => all.filter((container) => container.status === status).length;
    return {
      ID: 'runcd',
      Containers: all.length,
      ContainersRunning: count('running'),
      ContainersPaused: count('paused'),
      ContainersStopped: count('stopped'),
      Images: 0,
      Driver: 'runcd-bundles',
      OperatingSystem: 'linux',
      OSType: 'linux',
      Architecture: arch(),
      KernelVersion: release(),
      NCPU: cpus().length,
      MemTotal: totalmem(),
      Name: hostname(),
      ServerVersion: RUNCD_VERSION,
      DefaultRuntime: 'runc',
      Runtimes: { runc: { path: 'runc' } },
      SecurityOptions: ['name=seccomp,profile=builtin'],
      Labels: [],
      Warnings: [],
    };
  });

  // ---- images: runcd's managed bundles under a name
  const bundles = deps.bundles;
  if (bundles) {
    await registerImageRoutes(app, bundles, deps.imageLoader);
    app.post('/containers/create', { config: { access: 'admin' } }, async (request, reply) => {
      const name = first((request.query as Query).name);
      const created = await createFromImage(bundles, name, (request.body ?? {}) as never);
      return reply.code(201).send({ Id: dockerIdOf(created.id), Warnings: [] });
    });
  } else {
    for (const [method, url] of [
      ['GET', '/images/json'],
      ['POST', '/images/create'],
      ['POST', '/images/load'],
      ['DELETE', '/images/:name'],
      ['POST', '/containers/create'],
    ] as const) {
      app.route({
        method,
        url,
        config: { access: method === 'GET' ? 'read' : 'admin' },
        handler: async () => {
          throw notImplemented(`${method} ${url.replace(':name', '{name}')}`, IMAGES_MISSING);
        },
      });
    }
  }

  // `docker inspect NAME` tries each object kind in turn; runcd has no networks, volumes or plugins (nor images
  // without bundles), so the true answer is that there is no such one (and the CLI then says "No such object").
  for (const [url, kind] of [
    ...(bundles ? [] : ([['/images/:name/json', 'image']] as const)),
    ['/networks/:name', 'network'],
    ['/volumes/:name', 'volume'],
    ['/plugins/:name/json', 'plugin'],
  ] as const) {
    app.get(url, { config: { access: 'read' } }, async (request) => {
      throw new DockerError(404, `No such ${kind}: ${(request.params as { name: string }).name}`);
    });
  }

  // ---- containers
  app.get('/containers/json', { config: { access: 'read' } }, async (request) => {
    const query = request.query as Query;
    const filters = parseFilters(query.filters);
    let list = containers.list();
    if (!queryBool(query.all)) list = list.filter((container) => container.status !== 'stopped');
    list = list.filter((container) => matchesContainerFilters(container, filters));
    list.sort((a, b) => b.created.localeCompare(a.created));
    const limit = query.limit === undefined ? undefined : Number(first(query.limit));
    if (limit !== undefined && Number.isInteger(limit) && limit > 0) list = list.slice(0, limit);
    return Promise.all(
      list.map(async (container) =>
        summaryOf(
          container,
          await commandOf(containers, container),
          imageOfBundle(deps.bundles, container.bundle),
        ),
      ),
    );
  });

  app.get('/containers/:id/json', { config: { access: 'read' } }, async (request) => {
    const id = resolveContainer(containers, idParam(request));
    const container = containers.get(id);
    return inspectOf(
      container,
      await commandOf(containers, container),
      imageOfBundle(deps.bundles, container.bundle),
    );
  });

  app.post('/containers/:id/start', { config: { access: 'operate' } }, async (request, reply) => {
    const id = resolveContainer(containers, idParam(request));
    const started = await asDocker('start', id, async () => {
      try {
        await containers.start(id);
      } catch (error) {
        // runc cannot start a stopped container; `docker start` of an exited one runs it again from its bundle.
        if (!(error instanceof DomainError && error.code === 'container_stopped')) throw error;
        await containers.restart(id, { timeoutSeconds: 0 });
      }
    });
    return reply.code(started === NOT_MODIFIED ? 304 : 204).send();
  });

  app.post('/containers/:id/stop', { config: { access: 'operate' } }, async (request, reply) => {
    const id = resolveContainer(containers, idParam(request));
    const query = request.query as Query;
    const outcome = await asDocker('stop', id, () =>
      containers.stopReporting(id, {
        timeoutSeconds: timeoutParam(query.t),
        signal: query.signal === undefined ? undefined : signalParam(query.signal),
      }),
    );
    // Docker's 304: there was nothing to stop.
    return reply.code(outcome !== NOT_MODIFIED && outcome.stopped ? 204 : 304).send();
  });

  app.post('/containers/:id/restart', { config: { access: 'operate' } }, async (request, reply) => {
    const id = resolveContainer(containers, idParam(request));
    await asDocker('restart', id, () =>
      containers.restart(id, { timeoutSeconds: timeoutParam((request.query as Query).t) }),
    );
    return reply.code(204).send();
  });

  app.post('/containers/:id/kill', { config: { access: 'operate' } }, async (request, reply) => {
    const id = resolveContainer(containers, idParam(request));
    const query = request.query as Query;
    const signal = query.signal === undefined ? signalParam('SIGKILL') : signalParam(query.signal);
    await asDocker('kill', id, () => containers.kill(id, signal));
    return reply.code(204).send();
  });

  app.post('/containers/:id/pause', { config: { access: 'operate' } }, async (request, reply) => {
    const id = resolveContainer(containers, idParam(request));
    await asDocker('pause', id, () => containers.pause(id));
    return reply.code(204).send();
  });

  app.post('/containers/:id/unpause', { config: { access: 'operate' } }, async (request, reply) => {
    const id = resolveContainer(containers, idParam(request));
    await asDocker('unpause', id, () => containers.resume(id));
    return reply.code(204).send();
  });

  app.delete('/containers/:id', { config: { access: 'admin' } }, async (request, reply) => {
    const id = resolveContainer(containers, idParam(request));
    const force = queryBool((request.query as Query).force);
    await asDocker('remove', id, () => containers.delete(id, { force }));
    return reply.code(204).send();
  });

  app.post('/containers/:id/wait', { config: { access: 'read' } }, async (request, reply) => {
    const id = resolveContainer(containers, idParam(request));
    const condition = first((request.query as Query).condition) ?? 'not-running';
    if (!['not-running', 'next-exit', 'removed'].includes(condition)) {
      throw new DockerError(400, `invalid condition: "${condition}"; use not-running, next-exit or removed`);
    }
    const waiter = containers.waitFor(id, condition === 'removed' ? 'removed' : 'stopped');
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

  app.get('/containers/:id/top', { config: { access: 'read' } }, async (request) => {
    const id = resolveContainer(containers, idParam(request));
    const processes = await containers.processes(id);
    return {
      Titles: ['UID', 'PID', 'PPID', 'STAT', 'CMD'],
      Processes: processes.map((each) => [
        each.user,
        String(each.pid),
        String(each.ppid),
        each.state,
        each.command,
      ]),
    };
  });

  app.get('/containers/:id/logs', { config: { access: 'read' } }, async (request, reply) => {
    const id = resolveContainer(containers, idParam(request));
    const query = request.query as Query;
    const stdout = queryBool(query.stdout);
    const stderr = queryBool(query.stderr);
    if (!stdout && !stderr) throw new DockerError(400, 'Bad parameters: you must choose at least one stream');
    const tailValue = first(query.tail);
    const tail = tailValue === undefined || tailValue === 'all' ? undefined : Number(tailValue);
    if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) {
      throw new DockerError(400, `tail must be "all" or a number of lines; got "${tailValue}"`);
    }
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
        peer.orWhen(closing.signal),
      )
      .catch(() => undefined)
      .finally(() => peer.end());
    return reply.type('application/vnd.docker.multiplexed-stream').send(body);
  });

  // Output only (no stdin): enough for a foreground `docker run` / `docker start -a` to print what the container
  // writes. The CLI attaches before it starts the container, so the stream waits for the start first.
  app.post('/containers/:id/attach', { config: { access: 'admin' } }, async (request, reply) => {
    const id = resolveContainer(containers, idParam(request));
    const query = request.query as Query;
    if (queryBool(query.stdin)) {
      throw notImplemented(
        'attaching stdin (docker run -i, docker attach)',
        'runcd containers have no stdin',
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
      // From now on starts at the log's end as it is now, before a created container is started: `docker run`
      // attaches first and starts after, and sees the container's first line.
      await logs
        .stream(
          id,
          {
            follow,
            tail: history ? undefined : 0,
            stream: stdout && stderr ? 'all' : stdout ? 'stdout' : 'stderr',
          },
          logFrames(peer, false),
          peer.orWhen(closing.signal),
        )
        .catch(() => undefined);
    }
    endRawStream(peer);
  });

  // Answered 501 whatever the method; reading that needs what a read needs, anything else what a change needs.
  for (const endpoint of ['resize', 'export', 'changes', 'stats', 'update', 'rename', 'archive']) {
    for (const [methods, access] of [
      [['GET', 'HEAD'], 'read'],
      [['POST', 'PUT', 'DELETE', 'PATCH'], 'admin'],
    ] as const) {
      app.route({
        method: [...methods],
        url: `/containers/:id/${endpoint}`,
        config: { access },
        handler: async (request) => {
          throw notImplemented(`${request.method} /containers/{id}/${endpoint}`);
        },
      });
    }
  }

  // ---- exec
  app.post('/containers/:id/exec', { config: { access: 'admin' } }, async (request, reply) => {
    const id = resolveContainer(containers, idParam(request));
    const body = (request.body ?? {}) as Record<string, unknown>;
    if (body.Tty === true) {
      throw notImplemented('exec with a TTY (docker exec -t)', 'runcd execs without a terminal; drop -t');
    }
    if (body.AttachStdin === true) {
      throw notImplemented('exec with stdin (docker exec -i)', 'runcd execs without stdin; drop -i');
    }
    const parsed = ExecBody.safeParse({
      args: body.Cmd,
      ...(body.Env !== undefined && body.Env !== null ? { env: body.Env } : {}),
      ...(typeof body.WorkingDir === 'string' && body.WorkingDir !== '' ? { cwd: body.WorkingDir } : {}),
      ...(typeof body.User === 'string' && body.User !== '' ? { user: body.User } : {}),
    });
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field =
        { args: 'Cmd', env: 'Env', cwd: 'WorkingDir', user: 'User' }[String(issue?.path[0])] ?? 'body';
      throw new DockerError(400, `exec ${field}: ${issue?.message ?? 'invalid'}`);
    }
    // The exec runs only at start; Docker refuses it at create already, so the state table is asked now.
    await asDocker('exec', id, async () => assertAllowed('exec', containers.get(id)));
    const session = execs.create(id, parsed.data);
    return reply.code(201).send({ Id: session.id });
  });

  app.post('/exec/:id/start', { config: { access: 'admin' } }, async (request, reply) => {
    const session = execs.get(idParam(request));
    if (!session) throw new DockerError(404, `No such exec instance: ${idParam(request)}`);
    if (session.started) throw new DockerError(409, `exec instance ${session.id} has already been started`);
    const body = (request.body ?? {}) as Record<string, unknown>;
    if (body.Tty === true) throw notImplemented('exec with a TTY (docker exec -t)', 'drop -t');
    session.started = true;
    session.running = true;
    if (body.Detach === true) {
      void runExec(containers, execs, session, DISCARDED_OUTPUT);
      return reply.code(200).send();
    }
    const upgrade = /\bupgrade\b/i.test(request.headers.connection ?? '');
    reply.hijack();
    const peer = new PeerStream(request.raw.socket);
    openRawStream(peer, upgrade, 'application/vnd.docker.multiplexed-stream');
    await runExec(containers, execs, session, {
      write: (stream, chunk) => peer.write(frame(stream, chunk)),
      drained: () => peer.drained(),
      signal: peer.signal,
    });
    endRawStream(peer);
  });

  app.get('/exec/:id/json', { config: { access: 'read' } }, async (request) => {
    const session = execs.get(idParam(request));
    if (!session) throw new DockerError(404, `No such exec instance: ${idParam(request)}`);
    return execInspectOf(session);
  });

  // ---- events
  app.get('/events', { config: { access: 'read' } }, async (request, reply) => {
    const query = request.query as Query;
    const since = timeParam(query.since, 'since');
    const until = timeParam(query.until, 'until');
    const filters = parseFilters(query.filters);
    const events = containers.events;
    const body = new PassThrough();
    const peer = new PeerStream(body);
    const labelsById = new Map(containers.list().map((container) => [container.id, container.labels]));
    const labelsOf = (id: string) => {
      try {
        const labels = containers.get(id).labels;
        labelsById.set(id, labels);
        return labels;
      } catch {
        return labelsById.get(id) ?? {};
      }
    };
    void events
      .stream(
        { since, until },
        {
          write: (event) => {
            const docker = dockerEventOf(event, labelsOf(event.id));
            if (!matchesEventFilters(docker, event.id, filters)) return true;
            return peer.write(`${JSON.stringify(docker)}\n`);
          },
          drained: () => peer.drained(),
        },
        peer.orWhen(closing.signal),
      )
      .catch(() => undefined)
      .finally(() => peer.end());
    return reply.type('application/json').send(body);
  });

  return app;
}

const NOT_MODIFIED = Symbol('not modified');

/**
 * Runs a native operation for a Docker route: the operation decides (it knows the state), and its refusal is
 * translated through Docker's table for that operation, where a 304 is an answer rather than an error.
 */
async function asDocker<T>(
  operation: DockerOperation,
  id: string,
  run: () => Promise<T>,
): Promise<T | typeof NOT_MODIFIED> {
  try {
    return await run();
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    const answer = dockerAnswerFor(error, operation, dockerIdOf(id));
    if (answer.status === 304) return NOT_MODIFIED;
    throw new DockerError(answer.status, answer.message);
  }
}

/** Exactly `application/json`: the docker CLI shows the raw body instead of the message for anything else. */
function sendDockerError(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply
    .code(status)
    .header('content-type', 'application/json')
    .send(Buffer.from(JSON.stringify({ message })));
}

async function runExec(
  containers: ContainerService,
  execs: ExecSessions,
  session: ExecSession,
  output: ExecOutput,
): Promise<void> {
  try {
    const result = await containers.exec(session.containerId, session.request, output);
    execs.finished(session, result.exitCode);
  } catch (error) {
    // The stream is already open: the failure goes to stderr, and the exit code is the one Docker uses when
    // the command cannot be run (127 when it does not exist, 126 otherwise).
    const message = dockerErrorFor(error).message;
    output.write('stderr', Buffer.from(`runcd: exec failed: ${message}\n`));
    execs.finished(session, /not found|no such file/i.test(message) ? 127 : 126);
  }
}

/** `docker exec -d`: nobody reads the output, so it is taken and dropped (the process never blocks on it). */
const DISCARDED_OUTPUT: ExecOutput = {
  write: () => true,
  drained: () => Promise.resolve(),
  signal: new AbortController().signal,
};

/** Log lines as Docker's multiplexed frames, with the peer's backpressure. */
function logFrames(peer: PeerStream, timestamps: boolean): LogSink {
  return {
    write: (entry) =>
      peer.write(frame(entry.stream, Buffer.from(`${timestamps ? `${entry.time} ` : ''}${entry.line}\n`))),
    drained: () => peer.drained(),
  };
}

/** Ends a hijacked stream; a client that keeps its half open (stdin) must not hold the connection forever. */
function endRawStream(peer: PeerStream): void {
  peer.end();
  if (!peer.closed) setTimeout(() => peer.destroy(), 5_000).unref();
}

function execInspectOf(session: ExecSession): Record<string, unknown> {
  return {
    ID: session.id,
    Running: session.running,
    ExitCode: session.exitCode,
    ProcessConfig: {
      tty: false,
      entrypoint: session.request.args[0],
      arguments: session.request.args.slice(1),
      privileged: false,
      user: session.request.user ?? '',
    },
    OpenStdin: false,
    OpenStderr: true,
    OpenStdout: true,
    CanRemove: false,
    ContainerID: dockerIdOf(session.containerId),
    DetachKeys: '',
    Pid: 0,
  };
}

// ---- translation of runcd's view into Docker's shapes

/** The command of the config runc runs (runcd's checked copy), not the caller's file, which may have changed. */
async function commandOf(containers: ContainerService, container: Container): Promise<string[]> {
  try {
    return (await containers.runningConfig(container.id))?.process?.args ?? [];
  } catch {
    return [];
  }
}

function dockerState(container: Container): string {
  return container.status === 'stopped'
    ? 'exited'
    : container.status === 'creating'
      ? 'created'
      : container.status;
}

function unixSeconds(time: string | null): number {
  return time ? Math.floor(Date.parse(time) / 1000) : 0;
}

function humanDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 1) return 'Less than a second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return minutes === 1 ? 'About a minute' : `${minutes} minutes`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return hours === 1 ? 'About an hour' : `${hours} hours`;
  return `${Math.round(hours / 24)} days`;
}

function statusText(container: Container): string {
  const now = Date.now();
  switch (container.status) {
    case 'running':
      return `Up ${humanDuration(now - Date.parse(container.startedAt ?? container.created))}`;
    case 'paused':
      return `Up ${humanDuration(now - Date.parse(container.startedAt ?? container.created))} (Paused)`;
    case 'stopped':
      return `Exited (${container.exitCode ?? 0}) ${humanDuration(now - Date.parse(container.finishedAt ?? container.created))} ago`;
    default:
      return 'Created';
  }
}

function summaryOf(container: Container, command: string[], image: string): Record<string, unknown> {
  return {
    Id: dockerIdOf(container.id),
    Names: [`/${container.id}`],
    Image: image,
    ImageID: '',
    Command: command.join(' '),
    Created: unixSeconds(container.created),
    Ports: [],
    Labels: container.labels,
    State: dockerState(container),
    Status: statusText(container),
    HostConfig: { NetworkMode: 'none' },
    NetworkSettings: { Networks: {} },
    Mounts: [],
  };
}

const ZERO_TIME = '0001-01-01T00:00:00Z';

function inspectOf(container: Container, command: string[], image: string): Record<string, unknown> {
  const state = dockerState(container);
  return {
    Id: dockerIdOf(container.id),
    Created: container.created,
    Path: command[0] ?? '',
    Args: command.slice(1),
    State: {
      Status: state,
      Running: container.status === 'running' || container.status === 'paused',
      Paused: container.status === 'paused',
      Restarting: false,
      OOMKilled: container.oomKilled,
      Dead: false,
      Pid: container.pid,
      ExitCode: container.exitCode ?? 0,
      Error: '',
      StartedAt: container.startedAt ?? ZERO_TIME,
      FinishedAt: container.finishedAt ?? ZERO_TIME,
    },
    Image: image,
    ResolvConfPath: '',
    HostnamePath: '',
    HostsPath: '',
    LogPath: '',
    Name: `/${container.id}`,
    RestartCount: container.restartCount,
    Driver: 'runcd-bundles',
    Platform: 'linux',
    MountLabel: '',
    ProcessLabel: '',
    AppArmorProfile: '',
    HostConfig: {
      NetworkMode: 'none',
      RestartPolicy: {
        Name: container.restartPolicy.name,
        MaximumRetryCount: container.restartPolicy.maxRetries ?? 0,
      },
      AutoRemove: container.autoRemove,
    },
    GraphDriver: { Name: 'runcd-bundles', Data: { RootFs: container.rootfs, Bundle: container.bundle } },
    Mounts: [],
    Config: {
      Hostname: container.id,
      User: '',
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      Tty: false,
      OpenStdin: false,
      StdinOnce: false,
      Env: [],
      Cmd: command,
      Image: image,
      WorkingDir: '',
      Entrypoint: null,
      Labels: container.labels,
      StopSignal: container.stopSignal,
      StopTimeout: container.stopTimeout,
    },
    NetworkSettings: { Networks: {}, Ports: {} },
  };
}

const EVENT_ACTIONS: Readonly<Record<string, string>> = {
  create: 'create',
  start: 'start',
  exec: 'exec_die',
  kill: 'kill',
  stop: 'stop',
  die: 'die',
  pause: 'pause',
  resume: 'unpause',
  restart: 'restart',
  delete: 'destroy',
};

interface DockerEvent {
  status: string;
  id: string;
  from: string;
  Type: 'container';
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: 'local';
  time: number;
  timeNano: number;
}

function dockerEventOf(event: ContainerEvent, labels: Record<string, string>): DockerEvent {
  const action = EVENT_ACTIONS[event.type] ?? event.type;
  const attributes: Record<string, string> = { ...labels, name: event.id };
  for (const [key, value] of Object.entries(event.attributes)) {
    if (value !== null) attributes[key] = String(value);
  }
  const ms = Date.parse(event.time);
  const id = dockerIdOf(event.id);
  return {
    status: action,
    id,
    from: '',
    Type: 'container',
    Action: action,
    Actor: { ID: id, Attributes: attributes },
    scope: 'local',
    time: Math.floor(ms / 1000),
    timeNano: ms * 1_000_000,
  };
}

// ---- query parsing

type Filters = Map<string, string[]>;

function parseFilters(value: string | string[] | undefined): Filters {
  const text = first(value);
  const filters: Filters = new Map();
  if (text === undefined || text === '') return filters;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new DockerError(400, `invalid filters: ${text} is not JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null)
    throw new DockerError(400, 'invalid filters: not an object');
  for (const [key, values] of Object.entries(parsed as Record<string, unknown>)) {
    // Docker accepts both {"name": ["a"]} and the older {"name": {"a": true}}.
    const list = Array.isArray(values)
      ? values.map(String)
      : typeof values === 'object' && values !== null
        ? Object.keys(values)
        : [];
    filters.set(key, list);
  }
  return filters;
}

const CONTAINER_FILTERS = new Set(['status', 'label', 'id', 'name']);

function matchesLabels(labels: Record<string, string>, wanted: string[] | undefined): boolean {
  return (wanted ?? []).every((item) => {
    const eq = item.indexOf('=');
    return eq === -1 ? item in labels : labels[item.slice(0, eq)] === item.slice(eq + 1);
  });
}

function matchesContainerFilters(container: Container, filters: Filters): boolean {
  for (const key of filters.keys()) {
    if (!CONTAINER_FILTERS.has(key)) throw notImplemented(`the "${key}" filter of GET /containers/json`);
  }
  const status = filters.get('status');
  if (status?.length && !status.includes(dockerState(container))) return false;
  const ids = filters.get('id');
  if (ids?.length && !ids.some((id) => dockerIdOf(container.id).startsWith(id))) return false;
  const names = filters.get('name');
  if (names?.length && !names.some((name) => container.id.includes(name.replace(/^\//, '')))) return false;
  return matchesLabels(container.labels, filters.get('label'));
}

function matchesEventFilters(event: DockerEvent, runcId: string, filters: Filters): boolean {
  const containersWanted = filters.get('container');
  if (
    containersWanted?.length &&
    !containersWanted.some(
      (wanted) => wanted === runcId || (wanted.length > 0 && event.id.startsWith(wanted)),
    )
  ) {
    return false;
  }
  const actions = filters.get('event');
  if (actions?.length && !actions.includes(event.Action)) return false;
  const types = filters.get('type');
  if (types?.length && !types.includes('container')) return false;
  return matchesLabels(event.Actor.Attributes, filters.get('label'));
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function queryBool(value: string | string[] | undefined): boolean {
  const text = first(value);
  return text === '1' || text === 'true' || text === 'True';
}

function idParam(request: FastifyRequest): string {
  return (request.params as { id: string }).id;
}

function timeoutParam(value: string | string[] | undefined): number | undefined {
  const text = first(value);
  if (text === undefined || text === '') return undefined;
  const seconds = Number(text);
  if (!Number.isInteger(seconds) || seconds < -1) {
    throw new DockerError(400, `t must be a whole number of seconds (-1 waits forever); got "${text}"`);
  }
  return seconds;
}

function signalParam(value: string | string[] | undefined): Signal {
  const parsed = parseSignal(first(value) ?? '');
  if (!parsed.ok) throw new DockerError(400, `invalid signal: ${parsed.reason}`);
  return parsed.signal;
}

/** Docker sends unix seconds (with fractions) or RFC 3339; undefined when absent. */
/**
 * Docker's times: unix seconds (with a fraction) or RFC 3339. `since=0` is the epoch, so `docker events --since 0`
 * replays everything; `until=0` is Docker's "no end".
 */
function timeParam(value: string | string[] | undefined, name: 'since' | 'until'): string | undefined {
  const text = first(value)?.trim();
  if (text === undefined || text === '' || (text === '0' && name === 'until')) return undefined;
  const date = /^\d+(\.\d+)?$/.test(text) ? new Date(Number(text) * 1000) : new Date(text);
  if (Number.isNaN(date.getTime())) {
    throw new DockerError(400, `${name} ${JSON.stringify(text)} is not a time: use unix seconds or RFC 3339`);
  }
  return date.toISOString();
}

function dockerArch(): string {
  return { x64: 'amd64', arm64: 'arm64' }[arch()] ?? arch();
}
