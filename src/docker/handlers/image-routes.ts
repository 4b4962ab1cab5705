import {
  IMAGE_CONFIG_LABEL,
  IMAGE_LABEL,
  MAX_IMAGE_CONFIG_BYTES,
  familiarName,
  findImage,
  imageIdOf,
  imageName,
  imageNamesOf,
  labelsWithNames,
  inspectOf,
  summaryOf,
} from '../translate/images.js';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { BundleService } from '../../bundles/bundle-service.js';
import { ImageRunConfig } from '../../bundles/image-archive.js';
import type { ImageLoader, UnpackedImage } from '../../bundles/image-loader.js';
import type { Bundle } from '../../schemas/bundle.js';
import { ProcessSpec } from '../../schemas/bundle.js';
import { DockerError, notImplemented } from '../docker-errors.js';
import type { ImagePuller } from '../../bundles/image-puller.js';
import { pullImage, takeNameAway } from './image-pull.js';
import { pushImage } from './image-push.js';
import { saveImages } from './image-save.js';
import type { ImagePusher } from '../../bundles/image-pusher.js';
import type { ImageSaver } from '../../bundles/image-saver.js';

export type Query = Record<string, string | string[] | undefined>;
export const first = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);

export interface ImageTransfer {
  loader?: ImageLoader | undefined;
  puller?: ImagePuller | undefined;
  pusher?: ImagePusher | undefined;
  saver?: ImageSaver | undefined;
}

export async function registerImageRoutes(
  app: FastifyInstance,
  bundles: BundleService,
  { loader, puller, pusher, saver }: ImageTransfer,
): Promise<void> {
  app.get('/images/json', { config: { access: 'read' } }, async () =>
    bundles
      .list()
      .filter((bundle) => bundle.labels[IMAGE_LABEL] !== undefined)
      .map(summaryOf),
  );
  // Image names have slashes (`myorg/app`, `registry:5000/app:tag`), which clients put in the path as they are:
  // `/images/myorg/app/json`. A wildcard takes them; anything under /images that is not an inspect is the 501 the
  // not-found handler would answer.
  app.get('/images/*', { config: { access: 'read' } }, async (request, reply) => {
    const rest = (request.params as { '*': string })['*'];
    if (saver && rest.endsWith('/get') && rest !== '/get') {
      return saveImages(reply, bundles, saver, [rest.slice(0, -'/get'.length)]);
    }
    if (!rest.endsWith('/json') || rest === '/json') {
      throw notImplemented(`GET ${request.url.split('?')[0]}`);
    }
    return inspectOf(findImage(bundles, rest.slice(0, -'/json'.length)));
  });
  // docker save: GET /images/get?names=A&names=B.
  app.get('/images/get', { config: { access: 'read' } }, async (request, reply) => {
    if (!saver)
      throw notImplemented('GET /images/get (docker save)', 'this daemon was built without skopeo and umoci');
    const names = (request.query as Query).names;
    return saveImages(reply, bundles, saver, names === undefined ? [] : [names].flat());
  });
  app.delete('/images/*', { config: { access: 'admin' } }, async (request) => {
    const reference = (request.params as { '*': string })['*'];
    const image = findImage(bundles, reference);
    const names = imageNamesOf(image);
    const named = reference.startsWith('sha256:') ? undefined : imageName(reference).name;
    if (names.length > 1 && named !== undefined && names.includes(named)) {
      // One name of several: only the name goes; the rootfs stays for the others.
      await bundles.relabel(
        image.id,
        labelsWithNames(
          image,
          names.filter((name) => name !== named),
        ),
      );
      return [{ Untagged: named }];
    }
    if (image.containers.length > 0) {
      throw new DockerError(
        409,
        `conflict: unable to remove image ${image.labels[IMAGE_LABEL]}: containers use it (${image.containers.join(', ')})`,
      );
    }
    await bundles.delete(image.id);
    return [...names.map((name) => ({ Untagged: name })), { Deleted: imageIdOf(image) }];
  });

  // docker tag SOURCE REPO[:TAG]: one more name of the same bundle, sharing its rootfs.
  const tagImage = async (source: string, query: Query) => {
    const image = findImage(bundles, source);
    const repo = first(query.repo);
    if (!repo) throw new DockerError(400, 'docker tag needs a repository name (repo=NAME)');
    const tag = first(query.tag);
    if (
      !/^[A-Za-z0-9][A-Za-z0-9._/:-]{0,254}$/.test(repo) ||
      (tag && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag))
    ) {
      throw new DockerError(400, `invalid reference format: "${repo}${tag ? `:${tag}` : ''}"`);
    }
    // The CLI sends `docker.io/library/NAME` for a bare NAME; runcd keeps the familiar spelling, as docker load does.
    const { name } = imageName(familiarName(tag ? `${repo}:${tag}` : repo));
    const names = imageNamesOf(image);
    if (!names.includes(name)) {
      await takeNameAway(bundles, name, image.id);
      await bundles.relabel(image.id, labelsWithNames(findImage(bundles, names[0]!), [...names, name]));
    }
  };
  app.post('/images/:name/tag', { config: { access: 'admin' } }, async (request, reply) => {
    await tagImage((request.params as { name: string }).name, request.query as Query);
    return reply.code(201).send();
  });
  // Names with slashes (`127.0.0.1:5000/app:1`): POST /images/NAME/tag (docker tag) and /images/NAME/push.
  app.post('/images/*', { config: { access: 'admin' } }, async (request, reply) => {
    const rest = (request.params as { '*': string })['*'];
    const query = request.query as Query;
    if (rest.endsWith('/tag') && rest !== '/tag') {
      await tagImage(rest.slice(0, -'/tag'.length), query);
      return reply.code(201).send();
    }
    if (!pusher || !rest.endsWith('/push') || rest === '/push') {
      throw notImplemented(`POST ${request.url.split('?')[0]}`);
    }
    return pushImage(request, reply, bundles, pusher, rest.slice(0, -'/push'.length), first(query.tag));
  });

  // The tarball of `docker import` is streamed into the bundle, never buffered: its own scope, its own parser.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    scope.post('/images/create', { config: { access: 'admin' } }, async (request, reply) => {
      const query = request.query as Query;
      const fromSrc = first(query.fromSrc);
      const fromImage = first(query.fromImage);
      if (fromImage !== undefined && puller) {
        return pullImage(request, reply, bundles, puller, fromImage, first(query.tag));
      }
      if (fromImage !== undefined) {
        throw notImplemented(
          'pulling images (POST /images/create?fromImage=...)',
          'no registry is reachable from runcd; bring images in with `docker load` (a `docker save` archive) or `docker import` (a rootfs tarball)',
        );
      }
      if (fromSrc !== '-') {
        throw notImplemented(
          `POST /images/create?fromSrc=${fromSrc ?? ''}`,
          'only fromSrc=- (the tarball in the request body, as `docker import FILE` sends it) is supported',
        );
      }
      const repo = first(query.repo);
      if (!repo) throw new DockerError(400, 'docker import needs a repository name (repo=NAME)');
      const tag = first(query.tag);
      const { name, bundleId } = imageName(tag ? `${repo}:${tag}` : repo);
      if (bundles.list().some((bundle) => bundle.labels[IMAGE_LABEL] === name)) {
        throw new DockerError(409, `image ${name} already exists: docker rmi it first`);
      }
      await bundles.create({
        id: bundleId,
        rootfs: { upload: true },
        // A placeholder: imported images have no command; `docker create` gives one for each container.
        process: { args: ['sh'] },
        labels: { [IMAGE_LABEL]: name },
      });
      const length = request.headers['content-length'];
      try {
        await bundles.uploadRootfs(
          bundleId,
          request.body as Readable,
          length === undefined ? undefined : Number(length),
        );
      } catch (error) {
        await bundles.delete(bundleId).catch(() => undefined);
        throw error;
      }
      const image = findImage(bundles, name);
      return reply.type('application/json').send(`${JSON.stringify({ status: imageIdOf(image) })}\n`);
    });

    // docker load: the whole archive is unpacked before the answer starts, so failures keep their status codes;
    // the answer is then Docker's JSON message stream, which the CLI prints ("Loaded image: bb:latest").
    scope.post('/images/load', { config: { access: 'admin' } }, async (request, reply) => {
      if (!loader) {
        throw notImplemented(
          'POST /images/load (docker load)',
          'this daemon was built without the image loader',
        );
      }
      const length = request.headers['content-length'];
      const messages = await loader.load(
        request.body as Readable,
        length === undefined ? undefined : Number(length),
        {
          check: (images) => {
            for (const image of images)
              for (const name of namesToLoad(image.names)) refuseIfInUse(bundles, name);
          },
          commit: async (images) => {
            const lines: string[] = [];
            for (const image of images) lines.push(...(await commitImage(bundles, image)));
            return lines;
          },
        },
      );
      // Exactly `application/json` (no charset): only then does the CLI render the messages instead of echoing them.
      return reply
        .header('content-type', 'application/json')
        .send(Buffer.from(messages.map((line) => `${JSON.stringify({ stream: line })}\n`).join('')));
    });
  });
}

/** The names an archive gives an image, as the docker CLI spells them; an unnamed image cannot be kept. */
export function namesToLoad(names: string[]): string[] {
  if (names.length === 0) {
    throw new DockerError(
      400,
      'the archive holds an image without a name (no RepoTags, no io.containerd.image.name or full org.opencontainers.image.ref.name); runcd keeps images by name: docker tag it before docker save',
    );
  }
  return names.map((raw) => {
    if (!/^[A-Za-z0-9][A-Za-z0-9._/:-]{0,254}$/.test(raw)) {
      throw new DockerError(400, `invalid reference format: the archive names an image "${raw}"`);
    }
    return imageName(familiarName(raw)).name;
  });
}

/**
 * Loading a name that exists replaces that image, as Docker does; but where Docker would keep the old image
 * untagged under running containers, runcd's containers run on their image's bundle, so a name still in use
 * is refused instead of leaving a nameless bundle behind.
 */
export function refuseIfInUse(bundles: BundleService, name: string): Bundle | undefined {
  const existing = bundles.list().find((bundle) => bundle.labels[IMAGE_LABEL] === name);
  if (existing && existing.containers.length > 0) {
    throw new DockerError(
      409,
      `conflict: cannot load image ${name}: the image of that name is used by container${existing.containers.length > 1 ? 's' : ''} ${existing.containers.join(', ')}; remove ${existing.containers.length > 1 ? 'them' : 'it'} first (docker rm -f), or docker save the image under another tag`,
    );
  }
  return existing;
}

/** One bundle per name of the image (each with its own copy of the rootfs); an older image of a name goes. */
export async function commitImage(
  bundles: BundleService,
  image: UnpackedImage,
  extraLabels: Record<string, string> = {},
): Promise<string[]> {
  const defaults = runDefaults(image.run);
  const defaultsJson = JSON.stringify(defaults);
  if (Buffer.byteLength(defaultsJson) > MAX_IMAGE_CONFIG_BYTES) {
    throw new DockerError(
      400,
      `the image config's Entrypoint, Cmd and Env exceed ${MAX_IMAGE_CONFIG_BYTES} bytes`,
    );
  }
  const lines: string[] = [];
  for (const name of namesToLoad(image.names)) {
    const old = refuseIfInUse(bundles, name);
    const { bundleId } = imageName(name);
    // While the old image still exists, the new one takes a fresh id; the name (a label) is what docker uses.
    const id = bundles.has(bundleId)
      ? `${bundleId.slice(0, 55)}-${randomBytes(4).toString('hex')}`
      : bundleId;
    const created = await bundles.createFromUnpacked(
      {
        id,
        process: bundleProcessOf(defaults),
        labels: { ...extraLabels, [IMAGE_LABEL]: name, [IMAGE_CONFIG_LABEL]: defaultsJson },
      },
      image.rootfs,
      image.scratchDir,
    );
    if (old) {
      try {
        await bundles.delete(old.id);
      } catch (error) {
        // A container took the old image between the check and now: keep it, and drop the new one.
        await bundles.delete(created.id).catch(() => undefined);
        throw error;
      }
      lines.push(
        `The image ${name} already exists, renaming the old one with ID ${imageIdOf(old)} to empty string\n`,
      );
    }
    lines.push(`Loaded image: ${name}\n`);
  }
  return lines;
}

export function runDefaults(run: ImageRunConfig): ImageRunConfig {
  return {
    ...(run.Entrypoint && run.Entrypoint.length > 0 ? { Entrypoint: run.Entrypoint } : {}),
    ...(run.Cmd && run.Cmd.length > 0 ? { Cmd: run.Cmd } : {}),
    ...(run.Env && run.Env.length > 0 ? { Env: run.Env } : {}),
    ...(run.WorkingDir ? { WorkingDir: run.WorkingDir } : {}),
    ...(run.User ? { User: run.User } : {}),
  };
}

/**
 * The image bundle's own process (what `POST /containers {bundleId}` runs on the native API): the image's
 * defaults where runcd can express them, otherwise the same placeholder as an imported image.
 */
export function bundleProcessOf(defaults: ImageRunConfig): ProcessSpec {
  const args = [...(defaults.Entrypoint ?? []), ...(defaults.Cmd ?? [])];
  const parsed = ProcessSpec.safeParse({
    args,
    ...(defaults.Env ? { env: defaults.Env } : {}),
    ...(defaults.WorkingDir ? { cwd: defaults.WorkingDir } : {}),
    ...(defaults.User ? { user: defaults.User } : {}),
  });
  return parsed.success ? parsed.data : { args: ['sh'] };
}
