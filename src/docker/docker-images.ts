import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { BundleService } from '../bundles/bundle-service.js';
import { ImageRunConfig } from '../bundles/image-archive.js';
import type { ImageLoader, UnpackedImage } from '../bundles/image-loader.js';
import { NotFoundError } from '../errors.js';
import type { Bundle } from '../schemas/bundle.js';
import { CreateContainerRequest, ProcessSpec } from '../schemas/bundle.js';
import { DockerError, notImplemented } from './docker-errors.js';

/**
 * Docker images are runcd managed bundles under a name: `docker import` makes a bundle whose rootfs is the
 * uploaded tarball, and `docker create IMAGE` makes a container whose private bundle shares that rootfs
 * (`rootfsFrom`). The image name is kept as a bundle label, the bundle id is derived from it.
 */

export const IMAGE_LABEL = 'io.runcd.docker.image';
/**
 * The image's run defaults (Entrypoint, Cmd, Env, WorkingDir, User of its config), as JSON: what `docker run
 * IMAGE` falls back to. `docker load` sets it from the image config; an imported rootfs has none.
 */
export const IMAGE_CONFIG_LABEL = 'io.runcd.docker.config';
const MAX_IMAGE_CONFIG_BYTES = 64 * 1024;

/** The run defaults kept with an image; `{}` when it has none (docker import) or they no longer parse. */
export function imageDefaultsOf(image: Bundle): ImageRunConfig {
  const raw = image.labels[IMAGE_CONFIG_LABEL];
  if (raw === undefined) return {};
  try {
    const parsed = ImageRunConfig.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : {};
  } catch {
    return {};
  }
}

/** `docker.io/library/bb:latest`, as skopeo and containerd write names, is `bb:latest` to the docker CLI. */
export function familiarName(name: string): string {
  return name.replace(/^(docker\.io|index\.docker\.io)\/(library\/(?=[^/]+$))?/, '');
}

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
    Config: (() => {
      const defaults = imageDefaultsOf(bundle);
      return {
        Cmd: defaults.Cmd ?? null,
        Entrypoint: defaults.Entrypoint ?? null,
        Env: defaults.Env ?? [],
        WorkingDir: defaults.WorkingDir ?? '',
        User: defaults.User ?? '',
        Labels: {},
      };
    })(),
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

export async function registerImageRoutes(
  app: FastifyInstance,
  bundles: BundleService,
  loader: ImageLoader | undefined,
): Promise<void> {
  app.get('/images/json', { config: { access: 'read' } }, async () =>
    bundles
      .list()
      .filter((bundle) => bundle.labels[IMAGE_LABEL] !== undefined)
      .map(summaryOf),
  );
  app.get('/images/:name/json', { config: { access: 'read' } }, async (request) =>
    inspectOf(findImage(bundles, (request.params as { name: string }).name)),
  );
  app.delete('/images/:name', { config: { access: 'admin' } }, async (request) => {
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
    scope.post('/images/create', { config: { access: 'admin' } }, async (request, reply) => {
      const query = request.query as Query;
      const fromSrc = first(query.fromSrc);
      if (first(query.fromImage) !== undefined) {
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
function namesToLoad(names: string[]): string[] {
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
function refuseIfInUse(bundles: BundleService, name: string): Bundle | undefined {
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
async function commitImage(bundles: BundleService, image: UnpackedImage): Promise<string[]> {
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
        labels: { [IMAGE_LABEL]: name, [IMAGE_CONFIG_LABEL]: defaultsJson },
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

function runDefaults(run: ImageRunConfig): ImageRunConfig {
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
function bundleProcessOf(defaults: ImageRunConfig): ProcessSpec {
  const args = [...(defaults.Entrypoint ?? []), ...(defaults.Cmd ?? [])];
  const parsed = ProcessSpec.safeParse({
    args,
    ...(defaults.Env ? { env: defaults.Env } : {}),
    ...(defaults.WorkingDir ? { cwd: defaults.WorkingDir } : {}),
    ...(defaults.User ? { user: defaults.User } : {}),
  });
  return parsed.success ? parsed.data : { args: ['sh'] };
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
): Promise<{ id: string }> {
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
  const process = mergeWithImage(image, body);
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
      process,
      ...(nonEmpty(body.Hostname) ? { hostname: body.Hostname } : {}),
      ...(Object.keys(resources).length > 0 ? { resources } : {}),
      ...(host.Init === true ? { init: true } : {}),
    },
    ...(labels && Object.keys(labels).length > 0 ? { labels } : {}),
    ...(restartPolicy ? { restartPolicy } : {}),
    ...(nonEmpty(body.StopSignal) ? { stopSignal: body.StopSignal } : {}),
    ...(typeof body.StopTimeout === 'number' ? { stopTimeout: body.StopTimeout } : {}),
    // `docker run --rm`: a property of the container, so a restarted runcd still removes it.
    ...(host.AutoRemove === true ? { autoRemove: true } : {}),
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
  return { id };
}

/**
 * The container's process from its create body over the image's defaults, by Docker's rules: an Entrypoint of
 * the caller replaces the image's and drops the image's Cmd; otherwise the caller's Cmd (or the image's) follows
 * the image's Entrypoint. `--entrypoint ""` (`[""]`) clears it. Env merges by key; WorkingDir and User override.
 */
function mergeWithImage(
  image: Bundle,
  body: CreateBody,
): { args: string[]; env?: string[]; cwd?: string; user?: string } {
  const defaults = imageDefaultsOf(image);
  let entrypoint = stringList(body.Entrypoint);
  let cmd = stringList(body.Cmd);
  if (entrypoint === undefined || entrypoint.length === 0) {
    if (cmd === undefined || cmd.length === 0) cmd = defaults.Cmd ?? undefined;
    if (entrypoint === undefined) entrypoint = defaults.Entrypoint ?? undefined;
  }
  if (entrypoint?.length === 1 && entrypoint[0] === '') entrypoint = [];
  const args = [...(entrypoint ?? []), ...(cmd ?? [])];
  if (args.length === 0) throw new DockerError(400, 'No command specified');
  const env = new Map<string, string>();
  for (const entry of [...(defaults.Env ?? []), ...(stringList(body.Env) ?? [])]) {
    const equals = entry.indexOf('=');
    env.set(equals === -1 ? entry : entry.slice(0, equals), entry);
  }
  const cwd = nonEmpty(body.WorkingDir) ?? nonEmpty(defaults.WorkingDir);
  const user = nonEmpty(body.User) ?? nonEmpty(defaults.User);
  if (user !== undefined && nonEmpty(body.User) === undefined && !/^\d{1,10}(:\d{1,10})?$/.test(user)) {
    throw new DockerError(
      400,
      `image ${image.labels[IMAGE_LABEL]} runs as user "${user}", but runcd needs a numeric uid[:gid]: pass --user UID[:GID]`,
    );
  }
  return {
    args,
    ...(env.size > 0 ? { env: [...env.values()] } : {}),
    ...(cwd !== undefined ? { cwd } : {}),
    ...(user !== undefined ? { user } : {}),
  };
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
