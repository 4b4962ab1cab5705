import { posix } from 'node:path';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { packFromRoot, statInRoot, unpackIntoRoot, type PathStat } from '../../bundles/container-files.js';
import { ConflictError, InvalidInputError } from '../../errors.js';
import type { OciSpec } from '../../runtime/oci.js';
import type { DockerContext, Query } from '../docker-context.js';
import { DockerError } from '../docker-errors.js';
import { resolveContainer } from '../docker-ids.js';
import { first, idParam, queryBool } from '../translate/params.js';

/** The bounds of one copy into a container when runcd has no managed bundles to take them from. */
const DEFAULT_MAX_BYTES = 1024 * 1024 * 1024;
const MAX_ENTRIES = 500_000;

/**
 * `docker cp` both ways (and testcontainers' copies): `HEAD|GET|PUT /containers/{id}/archive?path=`. The files
 * are the container's rootfs as runc runs it (its own writable layer for a Docker container); the walk itself,
 * confined to that root whatever the container does meanwhile, is container-files.ts. A path on one of the
 * container's mounts (a bind, a tmpfs, /proc) is refused rather than answered from the directory under it.
 */
export async function registerArchiveRoutes(app: FastifyInstance, context: DockerContext): Promise<void> {
  const { containers, deps } = context;

  const target = async (request: FastifyRequest) => {
    const id = resolveContainer(context, idParam(request));
    const path = first((request.query as Query).path);
    if (path === undefined || path === '') throw new DockerError(400, 'path is required (?path=)');
    const container = containers.get(id);
    const config = await containers.runningConfig(id);
    refuseMounted(path, config);
    return { id, path, rootfs: container.rootfs, config };
  };

  const sendStat = (reply: FastifyReply, stat: PathStat) =>
    reply.header('x-docker-container-path-stat', Buffer.from(JSON.stringify(stat)).toString('base64'));

  app.head('/containers/:id/archive', { config: { access: 'read' } }, async (request, reply) => {
    const { path, rootfs } = await target(request);
    sendStat(reply, await statInRoot(rootfs, path));
    return reply.code(200).send();
  });

  app.get(
    '/containers/:id/archive',
    { config: { access: 'read' }, exposeHeadRoute: false },
    async (request, reply) => {
      const { path, rootfs } = await target(request);
      // The stat first: a missing path is a 404 before any byte of the archive.
      sendStat(reply, await statInRoot(rootfs, path));
      reply.header('content-type', 'application/x-tar');
      return reply.send(Readable.from(packFromRoot(rootfs, path), { objectMode: false }));
    },
  );

  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    scope.put('/containers/:id/archive', { config: { access: 'admin' } }, async (request, reply) => {
      const { id, path, rootfs, config } = await target(request);
      if (config?.root?.readonly !== false) {
        throw new ConflictError(
          'container_rootfs_readonly',
          `container rootfs is marked read-only: "${id}" runs on its image's rootfs (docker run --read-only, or a bundle with readonlyRootfs); nothing can be copied into it`,
          id,
        );
      }
      if (!(request.body instanceof Readable)) {
        throw new DockerError(400, 'the body must be a tar archive of what to copy into the container');
      }
      const query = request.query as Query;
      const user = config.process?.user;
      const maxBytes = deps.bundles?.maxRootfsBytes ?? DEFAULT_MAX_BYTES;
      await unpackIntoRoot(rootfs, path, request.body, {
        maxBytes,
        maxArchiveBytes: deps.bundles?.maxArchiveBytes ?? 2 * DEFAULT_MAX_BYTES,
        maxEntries: MAX_ENTRIES,
        noOverwriteDirNonDir: queryBool(query.noOverwriteDirNonDir),
        owner: queryBool(query.copyUIDGID) && user ? { uid: user.uid, gid: user.gid } : undefined,
      });
      return reply.code(200).send();
    });
  });
}

/** A path at or under one of the container's mount destinations (other than the root) is not in its rootfs. */
function refuseMounted(path: string, config: OciSpec | undefined): void {
  const asked = posix.normalize(posix.join('/', path));
  for (const mount of config?.mounts ?? []) {
    const destination = posix.normalize(posix.join('/', mount.destination));
    if (destination === '/') continue;
    if (asked === destination || asked.startsWith(destination + '/')) {
      throw new InvalidInputError(
        'container_path_on_mount',
        `"${path}" is on the container's ${mount.type ?? 'bind'} mount at ${destination}, not in its rootfs; runcd copies only within the rootfs`,
      );
    }
  }
}
