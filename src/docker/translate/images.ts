import { createHash } from 'node:crypto';
import type { BundleService } from '../../bundles/bundle-service.js';
import { ImageRunConfig } from '../../bundles/image-archive.js';
import type { Bundle } from '../../schemas/bundle.js';
import { DockerError } from '../docker-errors.js';

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
export const MAX_IMAGE_CONFIG_BYTES = 64 * 1024;
/**
 * Further names of the same image (JSON array): a second tag of a pulled digest, `docker tag`. All names share
 * the bundle's one rootfs; `docker rmi NAME` of one of several only takes the name away.
 */
export const IMAGE_NAMES_LABEL = 'io.runcd.docker.names';
/** The registry manifest digest a pulled image came as (sha256:...): its RepoDigests, and what a re-pull compares. */
export const IMAGE_DIGEST_LABEL = 'io.runcd.docker.digest';

/** Every name of an image bundle, its first name first. */
export function imageNamesOf(image: Bundle): string[] {
  const primary = image.labels[IMAGE_LABEL];
  if (primary === undefined) return [];
  let extra: unknown = [];
  try {
    extra = JSON.parse(image.labels[IMAGE_NAMES_LABEL] ?? '[]');
  } catch {
    extra = [];
  }
  const names = Array.isArray(extra) ? extra.filter((name) => typeof name === 'string') : [];
  return [primary, ...names.filter((name) => name !== primary)];
}

/** The labels of an image that goes by exactly these names (the first is its primary name). */
export function labelsWithNames(image: Bundle, names: string[]): Record<string, string> {
  const labels = { ...image.labels };
  delete labels[IMAGE_NAMES_LABEL];
  return {
    ...labels,
    [IMAGE_LABEL]: names[0]!,
    ...(names.length > 1 ? { [IMAGE_NAMES_LABEL]: JSON.stringify(names.slice(1)) } : {}),
  };
}

/**
 * The digest a push of the image got in each repository (JSON `{"HOST/NAME": "sha256:..."}`): runcd repacks the
 * rootfs for a push, so it is not the digest the image was pulled as.
 */
export const IMAGE_PUSHED_DIGESTS_LABEL = 'io.runcd.docker.pushed-digests';

function pushedDigestsOf(image: Bundle): Record<string, string> {
  try {
    const parsed: unknown = JSON.parse(image.labels[IMAGE_PUSHED_DIGESTS_LABEL] ?? '{}');
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return {};
    return Object.fromEntries(
      Object.entries(parsed).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
    );
  } catch {
    return {};
  }
}

/** Every registry digest the image is known under (pulled as, pushed as): a pull of one of them copies nothing. */
export function imageDigestsOf(image: Bundle): string[] {
  const pulled = image.labels[IMAGE_DIGEST_LABEL];
  return [...new Set([...(pulled ? [pulled] : []), ...Object.values(pushedDigestsOf(image))])];
}

/** The labels of an image that was pushed as `digest` to `repository`. */
export function labelsWithPushedDigest(
  image: Bundle,
  repository: string,
  digest: string,
): Record<string, string> {
  return {
    ...image.labels,
    [IMAGE_PUSHED_DIGESTS_LABEL]: JSON.stringify({ ...pushedDigestsOf(image), [repository]: digest }),
  };
}

/** `HOST/bb:1` of an image pulled as digest D → `HOST/bb@D`; a pushed repository's digest wins for its names. */
function repoDigestsOf(image: Bundle): string[] {
  const pulled = image.labels[IMAGE_DIGEST_LABEL];
  const pushed = pushedDigestsOf(image);
  // Only names of a registry (HOST[:PORT]/...) have a digest there; a local `docker tag` name has none.
  const repos = imageNamesOf(image)
    .filter((name) => /^[^/]*[.:][^/]*\//.test(name))
    .map((name) => name.slice(0, name.lastIndexOf(':')));
  return [...new Set(repos)].flatMap((repo) => {
    const digest = pushed[repo] ?? pulled;
    return digest ? [`${repo}@${digest}`] : [];
  });
}

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

export function imageIdOf(bundle: Bundle): string {
  return `sha256:${createHash('sha256').update(`runcd-image:${bundle.id}:${bundle.created}`).digest('hex')}`;
}

export function findImage(bundles: BundleService, reference: string): Bundle {
  const images = bundles.list().filter((bundle) => bundle.labels[IMAGE_LABEL] !== undefined);
  const wanted = reference.startsWith('sha256:') ? reference : imageName(reference).name;
  const found = images.find(
    (bundle) =>
      imageNamesOf(bundle).includes(wanted) ||
      repoDigestsOf(bundle).includes(reference) ||
      imageIdOf(bundle) === wanted ||
      (/^[0-9a-f]{4,64}$/.test(reference) && imageIdOf(bundle).slice(7).startsWith(reference)),
  );
  if (!found) throw new DockerError(404, `No such image: ${reference}`);
  return found;
}

export function summaryOf(bundle: Bundle): Record<string, unknown> {
  return {
    Id: imageIdOf(bundle),
    ParentId: '',
    RepoTags: imageNamesOf(bundle),
    RepoDigests: repoDigestsOf(bundle),
    Created: Math.floor(Date.parse(bundle.created) / 1000),
    Size: bundle.rootfs.sizeBytes,
    SharedSize: -1,
    VirtualSize: bundle.rootfs.sizeBytes,
    Labels: {},
    Containers: bundle.containers.length,
  };
}

export function inspectOf(bundle: Bundle): Record<string, unknown> {
  const defaults = imageDefaultsOf(bundle);
  const config = {
    Cmd: defaults.Cmd ?? null,
    Entrypoint: defaults.Entrypoint ?? null,
    Env: defaults.Env ?? [],
    WorkingDir: defaults.WorkingDir ?? '',
    User: defaults.User ?? '',
    Labels: {},
    Volumes: null,
  };
  return {
    Id: imageIdOf(bundle),
    RepoTags: imageNamesOf(bundle),
    RepoDigests: repoDigestsOf(bundle),
    Parent: '',
    Comment: 'runcd managed bundle',
    Created: bundle.created,
    Config: config,
    // Dropped from API 1.45, but docker-compose 1.29 reads ContainerConfig.Volumes when it re-creates a service
    // (KeyError 'ContainerConfig' without it).
    ContainerConfig: config,
    Architecture: process.arch === 'x64' ? 'amd64' : process.arch,
    Os: 'linux',
    Size: bundle.rootfs.sizeBytes,
    GraphDriver: { Name: 'runcd-bundles', Data: { Bundle: bundle.path } },
    RootFS: { Type: 'layers', Layers: [] },
    Metadata: { LastTagTime: ZERO_TIME },
  };
}

export const ZERO_TIME = '0001-01-01T00:00:00Z';

/**
 * The name (`docker ps` IMAGE column) and id of the image a container was made from. A container of the native API has no image: its
 * bundle path stands for the name and the id is empty, as Docker's `ImageID` of a container whose image is gone.
 */
export function imageRefOf(
  bundles: BundleService | undefined,
  bundlePath: string,
): { name: string; id: string } {
  if (!bundles) return { name: bundlePath, id: '' };
  const all = bundles.list();
  const own = all.find((bundle) => bundle.path === bundlePath);
  const source =
    own?.rootfs.source === 'shared' ? all.find((bundle) => bundle.id === own.rootfs.origin) : own;
  const name = source?.labels[IMAGE_LABEL];
  return name === undefined || !source ? { name: bundlePath, id: '' } : { name, id: imageIdOf(source) };
}
