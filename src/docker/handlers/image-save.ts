import type { FastifyReply } from 'fastify';
import type { BundleService } from '../../bundles/bundle-service.js';
import type { ImageSaver, SaveItem } from '../../bundles/image-saver.js';
import { DockerError } from '../docker-errors.js';
import { familiarName, findImage, imageName, imageNamesOf } from '../translate/images.js';
import { pushSourceOf } from './image-push.js';

/**
 * `docker save NAME...` (GET /images/get?names=NAME&names=..., or GET /images/NAME/get): one archive with each
 * image once, named by the names asked for (all of its names when asked for by id), in the form `docker load`
 * takes back, runcd's and Docker's alike.
 */
export async function saveImages(
  reply: FastifyReply,
  bundles: BundleService,
  saver: ImageSaver,
  references: string[],
): Promise<FastifyReply> {
  if (references.length === 0)
    throw new DockerError(400, 'docker save needs at least one image (names=NAME)');
  const byImage = new Map<string, { item: SaveItem; names: Set<string> }>();
  for (const reference of references) {
    const image = findImage(bundles, reference);
    const entry = byImage.get(image.id) ?? { item: { ...pushSourceOf(image), names: [] }, names: new Set() };
    byImage.set(image.id, entry);
    const named = /^(sha256:)?[0-9a-f]{4,64}$/.test(reference)
      ? undefined
      : imageName(familiarName(reference)).name;
    const names = named && imageNamesOf(image).includes(named) ? [named] : imageNamesOf(image);
    for (const name of names) entry.names.add(name);
  }
  const items = [...byImage.values()].map(({ item, names }) => ({ ...item, names: [...names] }));
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  const archive = await saver.save(items, controller.signal);
  return reply.type('application/x-tar').send(archive.stream);
}
