import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { packFromRoot } from '../../bundles/container-files.js';
import { layerChanges, type LayerChange } from '../../bundles/layer-changes.js';
import type { DockerContext } from '../docker-context.js';
import { notImplemented } from '../docker-errors.js';
import { resolveContainer } from '../docker-ids.js';
import { idParam } from '../translate/params.js';

/** A JSON array written one change at a time, so a layer of many files is never held in memory whole. */
async function* jsonArray(changes: AsyncGenerator<LayerChange>): AsyncGenerator<string> {
  let separator = '[';
  for await (const change of changes) {
    yield separator + JSON.stringify(change);
    separator = ',';
  }
  yield separator === '[' ? '[]' : ']';
}

/**
 * `docker diff` (GET /containers/ID/changes: the writable layer's upper directory, layer-changes.ts) and
 * `docker export` (GET /containers/ID/export: the container's rootfs as runc runs it, merged layer and image,
 * as a tar stream produced as fast as the client reads it). Neither includes the container's mounts (volumes,
 * binds, tmpfs), as with Docker: on the host side the rootfs directory holds only the overlay.
 */
export function registerChangesAndExportRoutes(app: FastifyInstance, context: DockerContext): void {
  const { containers, deps } = context;

  app.get('/containers/:id/changes', { config: { access: 'read' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    const container = containers.get(id);
    const layer = await deps.bundles?.layerOf(container.bundle);
    if (layer === undefined) {
      const config = await containers.runningConfig(id);
      // On the image's rootfs as it is (docker run --read-only): nothing can have changed.
      if (config?.root?.readonly !== false) return reply.code(200).send([]);
      throw notImplemented(
        `GET /containers/{id}/changes for "${id}"`,
        'its writable rootfs is a native bundle’s own directory, not a layer over an image, so runcd cannot tell what changed',
      );
    }
    reply.header('content-type', 'application/json');
    return reply.send(Readable.from(jsonArray(layerChanges(layer.upper, layer.lower))));
  });

  app.get('/containers/:id/export', { config: { access: 'read' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    const container = containers.get(id);
    reply.header('content-type', 'application/x-tar');
    return reply.send(Readable.from(packFromRoot(container.rootfs, '/'), { objectMode: false }));
  });
}
