import type { FastifyInstance } from 'fastify';
import type { Bundle } from '../../schemas/bundle.js';
import type { DockerContext, Query } from '../docker-context.js';
import { DockerError, notImplemented } from '../docker-errors.js';
import { runViewOf, summaryOf as containerSummaryOf } from '../translate/container-shapes.js';
import {
  IMAGE_LABEL,
  imageIdOf,
  imageNamesOf,
  imageRefOf,
  summaryOf as imageSummaryOf,
} from '../translate/images.js';
import { parseFilters } from '../translate/params.js';

/**
 * `docker system df` and `docker image prune`: what runcd's images take on disk, and removing the ones no container
 * uses. Every runcd image has a name (a load, import or pull always gives one), so Docker's "dangling" images
 * (untagged layers) do not exist here: a plain prune removes nothing, `prune -a` every unused image.
 */
export function registerDiskUsageRoutes(app: FastifyInstance, context: DockerContext): void {
  const { containers, deps } = context;
  const images = (): Bundle[] =>
    deps.bundles?.list().filter((bundle) => bundle.labels[IMAGE_LABEL] !== undefined) ?? [];

  app.get('/system/df', { config: { access: 'read' } }, async () => {
    const all = images();
    const list = containers.list();
    return {
      // Each image's rootfs is its own directory, shared by every container made from it (nothing is layered).
      LayersSize: all.reduce((sum, image) => sum + image.rootfs.sizeBytes, 0),
      Images: all.map((image) => ({ ...imageSummaryOf(image), SharedSize: 0 })),
      Containers: await Promise.all(
        list.map(async (container) => {
          const image = deps.bundles?.list().find((bundle) => bundle.id === container.bundle);
          return {
            ...containerSummaryOf(
              container,
              await runViewOf(containers, container),
              imageRefOf(deps.bundles, container.bundle),
              context.names.nameOf(container.id),
            ),
            // Not measured: walking a writable layer on every df would cost time without bound.
            SizeRw: 0,
            SizeRootFs: image?.rootfs.sizeBytes ?? 0,
          };
        }),
      ),
      Volumes: [],
      BuildCache: [],
    };
  });

  app.post('/images/prune', { config: { access: 'admin' } }, async (request) => {
    const bundles = deps.bundles;
    if (!bundles) throw notImplemented('docker image prune', 'this runcd has no managed images');
    const filters = parseFilters((request.query as Query).filters);
    for (const key of filters.keys()) {
      if (key !== 'dangling') {
        throw new DockerError(400, `invalid filter '${key}': runcd's image prune takes dangling only`);
      }
    }
    const dangling = filters.get('dangling') ?? ['true'];
    if (dangling.some((value) => !['true', 'false', '1', '0'].includes(value))) {
      throw new DockerError(400, `invalid filter 'dangling=${dangling.join(',')}': true or false`);
    }
    const onlyDangling = dangling.every((value) => value === 'true' || value === '1');
    const deleted: Record<string, string>[] = [];
    let reclaimed = 0;
    if (!onlyDangling) {
      for (const image of images()) {
        if (image.containers.length > 0) continue;
        try {
          await bundles.delete(image.id);
        } catch {
          // A container made from it since the list was read: it is in use after all and stays.
          continue;
        }
        reclaimed += image.rootfs.sizeBytes;
        deleted.push(...imageNamesOf(image).map((name) => ({ Untagged: name })), {
          Deleted: imageIdOf(image),
        });
      }
    }
    return { ImagesDeleted: deleted.length > 0 ? deleted : null, SpaceReclaimed: reclaimed };
  });
}
