import { Readable } from 'node:stream';
import type { DockerContext, Query } from '../docker-context.js';
import { DockerError, notImplemented } from '../docker-errors.js';
import { dockerIdOf } from '../docker-ids.js';
import { createFromImage } from '../translate/container-create.js';
import { registerImageRoutes } from './image-routes.js';
import { registerRegistryLogin } from './registry-login.js';
import { first } from '../translate/params.js';
import type { FastifyInstance } from 'fastify';

const IMAGES_MISSING =
  'images are runcd managed bundles, and this Docker listener was built without the bundle service; create containers with the native API (POST /containers on the runcd socket) and drive them with docker';

/** Images (runcd's managed bundles under a name), container create from one, and the object kinds runcd lacks. */
export async function registerImageAndCreateRoutes(
  app: FastifyInstance,
  context: DockerContext,
): Promise<void> {
  const { deps } = context;
  const { bundles, creation } = deps;
  if (bundles && creation) {
    await registerImageRoutes(app, bundles, {
      loader: deps.imageLoader,
      puller: deps.imagePuller,
      pusher: deps.imagePusher,
      saver: deps.imageSaver,
    });
    if (deps.imagePuller) registerRegistryLogin(app, deps.imagePuller);
    app.post('/containers/create', { config: { access: 'admin' } }, async (request, reply) => {
      const name = first((request.query as Query).name)?.replace(/^\//, '');
      // A name is claimed before anything is made: its runc id is the name unless a renamed container has it.
      const claim = name ? context.names.claimForCreate(name) : undefined;
      let made = false;
      try {
        const created = await createFromImage(
          bundles,
          creation,
          claim?.id,
          (request.body ?? {}) as never,
          deps.networks?.settings.defaultNetwork.name,
          deps.volumes,
        );
        made = true;
        return reply.code(201).send({ Id: dockerIdOf(created.id), Warnings: [] });
      } finally {
        claim?.settle(made);
      }
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

  // `docker build` sends its context as a tarball: the answer must name build, not fail on the body as JSON. The
  // context is read and dropped first (up to a bound): answered while it still writes, the CLI gets EPIPE and
  // shows that instead of the answer. The connection closes after the answer either way.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    scope.post('/build', { config: { access: 'admin' } }, async (request, reply) => {
      reply.header('connection', 'close');
      await discardBounded(request.body, BUILD_CONTEXT_DRAIN_BYTES);
      throw notImplemented(
        'POST /build (docker build)',
        'runcd builds no images; build elsewhere and bring the image in with docker load (a docker save archive)',
      );
    });
  });

  // `docker inspect NAME` tries each object kind in turn; runcd has no networks, volumes or plugins (nor images
  // without bundles), so the true answer is that there is no such one (and the CLI then says "No such object").
  for (const [url, kind] of [
    ...(bundles ? [] : ([['/images/:name/json', 'image']] as const)),
    ...(deps.networks ? [] : ([['/networks/:name', 'network']] as const)),
    ...(deps.volumes ? [] : ([['/volumes/:name', 'volume']] as const)),
    ['/plugins/:name/json', 'plugin'],
  ] as const) {
    app.get(url, { config: { access: 'read' } }, async (request) => {
      throw new DockerError(404, `No such ${kind}: ${(request.params as { name: string }).name}`);
    });
  }
}

/** How much of a build context is read (and dropped) before the 501, so the CLI is still listening for it. */
const BUILD_CONTEXT_DRAIN_BYTES = 64 * 1024 * 1024;

async function discardBounded(body: unknown, limit: number): Promise<void> {
  if (!(body instanceof Readable)) return;
  let read = 0;
  try {
    for await (const chunk of body) {
      read += (chunk as Buffer).length;
      if (read > limit) break;
    }
  } catch {
    // the client went away: nobody is left to answer
  }
}
