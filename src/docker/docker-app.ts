import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
} from 'fastify';
import type { BundleService } from '../bundles/bundle-service.js';
import type { ContainerCreation } from '../creation/container-creation.js';
import type { ImageLoader } from '../bundles/image-loader.js';
import type { ImagePuller } from '../bundles/image-puller.js';
import type { ImagePusher } from '../bundles/image-pusher.js';
import type { ImageSaver } from '../bundles/image-saver.js';
import type { ContainerService } from '../lifecycle/container-service.js';
import type { ExecSessions as InteractiveSessions } from '../lifecycle/exec-sessions.js';
import { LogService } from '../lifecycle/log-service.js';
import { DEFAULT_BODY_LIMIT } from '../security/limits.js';
import { DomainError, problemHeaders } from '../errors.js';
import httpObservability, { requestIdFor } from '../observability/http-observability.js';
import type { DaemonMetrics } from '../observability/metrics.js';
import securityPlugin, { type SecurityOptions } from '../security/security-plugin.js';
import { RUNCD_VERSION } from '../version.js';
import type { DockerContext } from './docker-context.js';
import { DockerError, dockerErrorFor, notImplemented } from './docker-errors.js';
import { ExecSessions } from './exec-sessions.js';
import { registerArchiveRoutes } from './handlers/archive.js';
import { registerChangesAndExportRoutes } from './handlers/changes-export.js';
import { DockerNames } from './docker-names.js';
import { registerVolumeRoutes } from './handlers/volumes.js';
import type { VolumeService } from '../bundles/volume-service.js';
import type { DockerNameRepository } from '../store/docker-name-repository.js';
import { registerContainerRoutes } from './handlers/containers.js';
import { registerEventRoutes } from './handlers/events.js';
import { registerExecRoutes } from './handlers/exec.js';
import { registerImageAndCreateRoutes } from './handlers/images.js';
import { registerStatsRoutes } from './handlers/stats.js';
import { registerNetworkRoutes } from './handlers/networks.js';
import type { NetworkService } from '../network/network-service.js';
import { registerStreamRoutes } from './handlers/streams.js';
import { registerSystemRoutes } from './handlers/system.js';
import { registerUpdateRoute } from './handlers/update.js';
import { registerDiskUsageRoutes } from './handlers/disk-usage.js';
import type { ContainerResourceService } from '../lifecycle/container-resources.js';
import type { ContainerAttach } from '../lifecycle/container-attach.js';
import { registerTerminalRoutes } from './handlers/container-terminal.js';
import { routeUpgradeRequestsAsRequests } from './upgrade-requests.js';

/**
 * The Docker Engine API, translated onto runcd's own services: every container operation goes through
 * ContainerService, logs through LogService, events through the EventBus. No second lifecycle lives here.
 * This file builds the listener (versioned URLs, Docker's error body, security); the handlers live in
 * handlers/ by operation group, the pure translations into Docker's shapes in translate/.
 */

/** Oldest and newest Docker API versions answered; 1.50 is what docker CLI 28 negotiates. */
export const DOCKER_MIN_API_VERSION = '1.41';
export const DOCKER_API_VERSION = '1.50';
const MIN_MINOR = 41;
const MAX_MINOR = 50;

export interface DockerAppDeps {
  containers: ContainerService;
  /** Managed bundles serve as images; without them, image endpoints and create answer 501. */
  bundles?: BundleService | undefined;
  /** `docker create`/`run` (needs `bundles` too); without them, image endpoints and create answer 501. */
  creation?: ContainerCreation | undefined;
  /** `docker load` (skopeo + umoci); without it, POST /images/load answers 501. */
  imageLoader?: ImageLoader | undefined;
  /** runcd's networks: `docker network`, `-p` and `--network`; without them, containers have network none. */
  networks?: NetworkService | undefined;
  /** `docker pull` (skopeo + umoci); without it, POST /images/create?fromImage answers 501. */
  imagePuller?: ImagePuller | undefined;
  /** `docker push` (umoci + skopeo); without it, POST /images/NAME/push answers 501. */
  imagePusher?: ImagePusher | undefined;
  /** `docker save`; without it, GET /images/get answers 501. */
  imageSaver?: ImageSaver | undefined;
  /** Named volumes (`docker volume`, `-v NAME:/path`); without them, those answer 501. */
  volumes?: VolumeService | undefined;
  /** Where Docker names that are not runc ids are kept (docker rename). */
  dockerNames: DockerNameRepository;
  /** Interactive exec sessions (`docker exec -it`, `-i`); without them, those answer 501. */
  sessions?: InteractiveSessions | undefined;
  security: SecurityOptions;
  /** `docker run -it`, `docker attach`, `docker start -ai` and resize; without it, they answer 501. */
  attach?: ContainerAttach | undefined;
  /** `docker update` (runc update); without it, the route answers 501. */
  resources?: ContainerResourceService | undefined;
  /** Where its request lines and failures go; absent in tests that need no log. */
  logger?: FastifyBaseLogger | undefined;
  metrics?: DaemonMetrics | undefined;
}

const versionOf = new WeakMap<object, string>();

export async function buildDockerApp(deps: DockerAppDeps): Promise<FastifyInstance> {
  const { containers } = deps;
  const logs = new LogService(containers);
  const execs = new ExecSessions();
  const names = new DockerNames(deps.dockerNames, containers);
  names.init();
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    // As on runcd's own listener: one line per request (http-observability) carrying a sane caller request id.
    requestIdHeader: false,
    genReqId: (request) => requestIdFor(request.headers['x-request-id']),
    logController: new LogController({ disableRequestLogging: true }),
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
  app.setErrorHandler((error, request, reply) => {
    const { status, message } = dockerErrorFor(error);
    // The answer tells the client to look here: without this line a Docker-API 500 left no trace.
    if (status >= 500 && status !== 501) request.log.error({ err: error }, 'request failed');
    // Retry-After on a 503 of too many sessions (or a rate limit), as on the native socket: Docker has no
    // such limit, so its clients only print the message, but a script can wait as long as it says.
    if (error instanceof DomainError) reply.headers(problemHeaders(error));
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
  // First, so the request context and timing cover every other hook (the security plugin's audit included).
  await app.register(httpObservability, { metrics: deps.metrics, api: 'docker' });
  await app.register(securityPlugin, deps.security);

  app.addHook('onClose', async () => names.close());
  const context: DockerContext = {
    containers,
    logs,
    execs,
    names,
    sessions: deps.sessions,
    closing: closing.signal,
    deps,
  };
  registerSystemRoutes(app, context);
  await registerImageAndCreateRoutes(app, context);
  registerContainerRoutes(app, context);
  registerUpdateRoute(app, context);
  registerDiskUsageRoutes(app, context);
  await registerArchiveRoutes(app, context);
  registerChangesAndExportRoutes(app, context);
  registerTerminalRoutes(app, context);
  registerStreamRoutes(app, context);
  registerStatsRoutes(app, context);
  registerExecRoutes(app, context);
  registerEventRoutes(app, context);
  if (deps.networks) registerNetworkRoutes(app, context, deps.networks);
  if (deps.volumes) registerVolumeRoutes(app, context, deps.volumes);
  return app;
}

/** Exactly `application/json`: the docker CLI shows the raw body instead of the message for anything else. */
function sendDockerError(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply
    .code(status)
    .header('content-type', 'application/json')
    .send(Buffer.from(JSON.stringify({ message })));
}
