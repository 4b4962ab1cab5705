import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { BundleService } from '../bundles/bundle-service.js';
import { NotFoundError } from '../errors.js';
import type { Bundle } from '../schemas/bundle.js';
import { CreateContainerRequest } from '../schemas/bundle.js';
import { DockerError, notImplemented } from './docker-errors.js';

/**
 * Docker images are runcd managed bundles under a name: `docker import` makes a bundle whose rootfs is the
 * uploaded tarball, and `docker create IMAGE` makes a container whose private bundle shares that rootfs
 * (`rootfsFrom`). The image name is kept as a bundle label, the bundle id is derived from it.
 */

export const IMAGE_LABEL = 'io.runcd.docker.image';

/** `busybox`, `busybox:latest` → `busybox:latest`; the bundle id is `busybox` (tags other than latest appended). */
export function imageName(reference: string): { name: string; bundleId: string } {
  const colon = reference.lastIndexOf(':');
  const hasTag = colon > reference.lastIndexOf('/');
  const repo = hasTag ? reference.slice(0, colon) : reference;
  const tag = hasTag ? reference.slice(colon + 1) : 'latest';
  const base = repo.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^[^A-Za-z0-9]+/, '');
  const bundleId = (tag === 'latest' ? base : `${base}_${tag.replace(/[^A-Za-z0-9_.-]/g, '_')}`).slice(0, 64);
  if (bundleId === '') throw new DockerError(400, `invalid reference format: "${reference}"`);
  return { name: `${repo}:${tag}`, bundleId };
}

function imageIdOf(bundle: Bundle): string {
  return `sha256:${createHash('sha256').update(`runcd-image:${bundle.id}:${bundle.created}`).digest('hex')}`;
}

export function findImage(bundles: BundleService, reference: string): Bundle {
  const images = bundles.list().filter((bundle) => bundle.labels[IMAGE_LABEL] !== undefined);
  const wanted = reference.startsWith('sha256:') ? reference : imageName(reference).name;
  const found = images.find(
    (bundle) =>
      bundle.labels[IMAGE_LABEL] === wanted ||
      imageIdOf(bundle) === wanted ||
      (/^[0-9a-f]{4,64}$/.test(reference) && imageIdOf(bundle).slice(7).startsWith(reference)),
  );
  if (!found) throw new DockerError(404, `No such image: ${reference}`);
  return found;
}

function summaryOf(bundle: Bundle): Record<string, unknown> {
  return {
    Id: imageIdOf(bundle),
    ParentId: '',
    RepoTags: [bundle.labels[IMAGE_LABEL]],
    RepoDigests: [],
    Created: Math.floor(Date.parse(bundle.created) / 1000),
    Size: bundle.rootfs.sizeBytes,
    SharedSize: -1,
    VirtualSize: bundle.rootfs.sizeBytes,
    Labels: {},
    Containers: bundle.containers.length,
  };
}

function inspectOf(bundle: Bundle): Record<string, unknown> {
  return {
    Id: imageIdOf(bundle),
    RepoTags: [bundle.labels[IMAGE_LABEL]],
    RepoDigests: [],
    Parent: '',
    Comment: 'runcd managed bundle',
    Created: bundle.created,
    Config: { Cmd: null, Entrypoint: null, Env: [], WorkingDir: '', Labels: {} },
    Architecture: process.arch === 'x64' ? 'amd64' : process.arch,
    Os: 'linux',
    Size: bundle.rootfs.sizeBytes,
    GraphDriver: { Name: 'runcd-bundles', Data: { Bundle: bundle.path } },
    RootFS: { Type: 'layers', Layers: [] },
    Metadata: { LastTagTime: ZERO_TIME },
  };
}

const ZERO_TIME = '0001-01-01T00:00:00Z';

type Query = Record<string, string | string[] | undefined>;
const first = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);

export async function registerImageRoutes(app: FastifyInstance, bundles: BundleService): Promise<void> {
  app.get('/images/json', async () =>
    bundles
      .list()
      .filter((bundle) => bundle.labels[IMAGE_LABEL] !== undefined)
      .map(summaryOf),
  );
  app.get('/images/:name/json', async (request) =>
    inspectOf(findImage(bundles, (request.params as { name: string }).name)),
  );
  app.delete('/images/:name', async (request) => {
    const image = findImage(bundles, (request.params as { name: string }).name);
    if (image.containers.length > 0) {
      throw new DockerError(
        409,
        `conflict: unable to remove image ${image.labels[IMAGE_LABEL]}: containers use it (${image.containers.join(', ')})`,
      );
    }
    await bundles.delete(image.id);
    return [{ Untagged: image.labels[IMAGE_LABEL] }, { Deleted: imageIdOf(image) }];
  });

  // The tarball of `docker import` is streamed into the bundle, never buffered: its own scope, its own parser.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    scope.post('/images/create', async (request, reply) => {
      const query = request.query as Query;
      const fromSrc = first(query.fromSrc);
      if (first(query.fromImage) !== undefined) {
        throw notImplemented(
          'pulling images (POST /images/create?fromImage=...)',
          'no registry is reachable from runcd; bring images in with `docker import` (a rootfs tarball)',
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
  });
}

interface CreateBody {
  Image?: unknown;
  Cmd?: unknown;
  Entrypoint?: unknown;
  Env?: unknown;
  WorkingDir?: unknown;
  User?: unknown;
  Labels?: unknown;
  Hostname?: unknown;
  StopSignal?: unknown;
  StopTimeout?: unknown;
  Tty?: unknown;
  OpenStdin?: unknown;
  HostConfig?: {
    Memory?: unknown;
    NanoCpus?: unknown;
    PidsLimit?: unknown;
    Init?: unknown;
    RestartPolicy?: { Name?: unknown; MaximumRetryCount?: unknown };
    AutoRemove?: unknown;
  };
}

const stringList = (value: unknown): string[] | undefined =>
  Array.isArray(value) ? value.map(String) : typeof value === 'string' && value !== '' ? [value] : undefined;
const nonEmpty = (value: unknown): string | undefined =>
  typeof value === 'string' && value !== '' ? value : undefined;
const positive = (value: unknown): number | undefined =>
  typeof value === 'number' && value > 0 ? value : undefined;

/** `POST /containers/create` → the native create with `spec` + `rootfsFrom`; answers the runcd id. */
export async function createFromImage(
  bundles: BundleService,
  nameParam: string | undefined,
  body: CreateBody,
): Promise<{ id: string; autoRemove: boolean }> {
  if (typeof body.Image !== 'string' || body.Image === '')
    throw new DockerError(400, 'config.Image is required');
  if (body.Tty === true || body.OpenStdin === true) {
    throw notImplemented(
      'containers with a TTY or stdin (docker run -t/-i)',
      'runcd keeps output as logs; drop -t and -i',
    );
  }
  let image: Bundle;
  try {
    image = findImage(bundles, body.Image);
  } catch (error) {
    if (error instanceof DockerError && error.status === 404) {
      throw new DockerError(
        404,
        `No such image: ${body.Image} (runcd cannot pull; bring it in with docker import)`,
      );
    }
    throw error;
  }
  const args = [...(stringList(body.Entrypoint) ?? []), ...(stringList(body.Cmd) ?? [])];
  if (args.length === 0) throw new DockerError(400, 'No command specified');
  const host = body.HostConfig ?? {};
  const id = nameParam?.replace(/^\//, '') || `runcd_${randomBytes(6).toString('hex')}`;
  const policy = nonEmpty(host.RestartPolicy?.Name);
  const restartPolicy =
    policy === undefined || policy === 'no'
      ? undefined
      : policy === 'on-failure'
        ? {
            name: 'on-failure',
            ...(positive(host.RestartPolicy?.MaximumRetryCount)
              ? { maxRetries: host.RestartPolicy?.MaximumRetryCount }
              : {}),
          }
        : { name: 'always' };
  const memory = positive(host.Memory);
  const nanoCpus = positive(host.NanoCpus);
  const pids = positive(host.PidsLimit);
  const resources = {
    ...(memory ? { memoryBytes: memory } : {}),
    ...(nanoCpus ? { cpus: nanoCpus / 1e9 } : {}),
    ...(pids ? { pidsLimit: pids } : {}),
  };
  const labels =
    body.Labels && typeof body.Labels === 'object' ? (body.Labels as Record<string, string>) : undefined;
  const request = {
    id,
    rootfsFrom: image.id,
    spec: {
      process: {
        args,
        ...(stringList(body.Env) ? { env: stringList(body.Env) } : {}),
        ...(nonEmpty(body.WorkingDir) ? { cwd: body.WorkingDir } : {}),
        ...(nonEmpty(body.User) ? { user: body.User } : {}),
      },
      ...(nonEmpty(body.Hostname) ? { hostname: body.Hostname } : {}),
      ...(Object.keys(resources).length > 0 ? { resources } : {}),
      ...(host.Init === true ? { init: true } : {}),
    },
    ...(labels && Object.keys(labels).length > 0 ? { labels } : {}),
    ...(restartPolicy ? { restartPolicy } : {}),
    ...(nonEmpty(body.StopSignal) ? { stopSignal: body.StopSignal } : {}),
    ...(typeof body.StopTimeout === 'number' ? { stopTimeout: body.StopTimeout } : {}),
  };
  const parsed = CreateContainerRequest.safeParse(request);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DockerError(
      400,
      `invalid container config: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}`,
    );
  }
  try {
    await bundles.createContainer(parsed.data);
  } catch (error) {
    if (error instanceof NotFoundError) throw new DockerError(404, error.message);
    throw error;
  }
  return { id, autoRemove: host.AutoRemove === true };
}

/** The image a container was made from (`docker ps` IMAGE column), or its bundle path when it has none. */
export function imageOfBundle(bundles: BundleService | undefined, bundlePath: string): string {
  if (!bundles) return bundlePath;
  const all = bundles.list();
  const own = all.find((bundle) => bundle.path === bundlePath);
  const source =
    own?.rootfs.source === 'shared' ? all.find((bundle) => bundle.id === own.rootfs.origin) : own;
  return source?.labels[IMAGE_LABEL] ?? bundlePath;
}
