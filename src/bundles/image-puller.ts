import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { ImageTools, RegistryAccess } from '../runtime/image-tools.js';
import type { BundleService } from './bundle-service.js';
import { checkLayerSizes, readLayoutImage } from './image-archive.js';
import type { UnpackedImage } from './image-loader.js';
import {
  type PullCredentials,
  RegistryAccessProvider,
  type RegistryAccessOptions,
  RegistryPullError,
  registryError,
} from './registry-access.js';
import { RegistryClient } from './registry-client.js';
import { discardTree } from './rootfs-writer.js';

export { RegistryPullError, type PullCredentials } from './registry-access.js';

/**
 * Pulling `HOST[:PORT]/NAME[:TAG|@DIGEST]` from a registry: runcd asks the registry for the manifest's digest
 * itself first (one HEAD from Node, RegistryClient, no process), so an image runcd already has under that digest
 * costs one request and no download at all. Otherwise the manifest is fetched by that digest (an index without
 * this host's platform and a layer over the quota are refused before any layer moves), skopeo copies the image
 * by digest into an OCI layout in a private scratch directory (blob digests verified), its layers are checked
 * against the rootfs quota once decompressed, and umoci unpacks it. The caller commits the unpacked tree into a
 * bundle; the scratch directory goes whatever happens, and an aborted signal (the client went away) cancels the
 * request or kills skopeo or umoci.
 *
 * Pulls of one manifest digest are single-flight: while one copies and commits, the others wait for it and then
 * find the image present, so two clients pulling the same image (or two tags of one digest) download it once
 * and share one rootfs.
 */

/** A parsed pull reference. */
export interface PullReference {
  /** `HOST[:PORT]`, the registry. */
  registry: string;
  /** `HOST[:PORT]/NAME`. */
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
}

export function referenceString(ref: PullReference): string {
  return ref.digest ? `${ref.repository}@${ref.digest}` : `${ref.repository}:${ref.tag ?? 'latest'}`;
}

export interface RemoteLayer {
  digest: string;
  size: number;
}

/** What the registry said before anything was copied. */
export interface ResolvedImage {
  /** sha256 of the manifest (or index) bytes the registry serves: the RepoDigest. */
  digest: string;
  /** The layers of this host's platform's manifest, as the registry declares them. */
  layers: RemoteLayer[];
}

/** Bytes of each layer copied so far (as Docker's pull reports "Downloading" with progressDetail). */
export interface LayerProgress {
  digest: string;
  current: number;
  total: number;
  done: boolean;
}

export interface PullControls {
  signal: AbortSignal;
  credentials?: PullCredentials | undefined;
  /** The layers' bytes so far, about twice a second while skopeo copies. */
  onProgress?: (layers: LayerProgress[]) => void;
  /** The copy is done and umoci unpacks the layers. */
  onExtracting?: () => void;
}

export interface ImagePullerDeps extends RegistryAccessOptions {
  bundles: BundleService;
  tools: ImageTools;
  logger: Logger;
  /** `--max-layer-bytes`: the largest layer (as the manifest declares it) a pull accepts. */
  maxLayerBytes?: number | undefined;
  /** How often the copy's bytes are counted (ms). */
  progressIntervalMs?: number;
}

const Descriptor = z.object({ digest: z.string(), size: z.number() });
const RawManifest = z.object({
  manifests: z
    .array(
      Descriptor.extend({
        platform: z.object({ os: z.string(), architecture: z.string() }).partial().optional(),
      }),
    )
    .optional(),
  layers: z.array(Descriptor).optional(),
});
const ConfigPlatform = z.object({ architecture: z.string().optional(), os: z.string().optional() });

/** This host's platform in OCI's words. */
const ARCHITECTURES: Readonly<Record<string, string>> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
};
export const HOST_ARCHITECTURE = ARCHITECTURES[process.arch] ?? process.arch;

export class ImagePuller {
  private readonly registries: RegistryAccessProvider;
  private readonly client = new RegistryClient();
  /** Manifest digest → the pull copying it now. */
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(private readonly deps: ImagePullerDeps) {
    this.registries = new RegistryAccessProvider(deps);
  }

  /**
   * Asks the registry for the manifest's digest (a HEAD from Node), then: `present(digest)` says whether runcd
   * already has it (then nothing else is asked or copied and its answer is the pull's); otherwise the manifest is
   * fetched by that digest and checked (platform, declared sizes), `starting` hears of its layers, the image is
   * copied and unpacked, and `commit` makes it a bundle. Another pull of the same digest waits for this one, then
   * sees the image present.
   */
  async pull<T>(
    ref: PullReference,
    controls: PullControls,
    steps: {
      present(digest: string): Promise<T | undefined>;
      starting(image: ResolvedImage): void;
      commit(image: UnpackedImage, resolved: ResolvedImage): Promise<T>;
    },
  ): Promise<T> {
    const reference = referenceString(ref);
    try {
      const endpoint = await this.registries.endpoint(ref.registry, controls.credentials);
      const name = ref.repository.slice(ref.registry.length + 1);
      const fetch = (what: string) => this.client.manifest(endpoint, name, what, reference, controls.signal);
      const asked = ref.digest ?? ref.tag ?? 'latest';
      const head = await this.client.manifestDigest(endpoint, name, asked, reference, controls.signal);
      // A registry that names no digest in its answer: the manifest's own bytes say it.
      let manifestBytes = head === undefined ? await fetch(asked) : undefined;
      const digest = head ?? manifestBytes!.digest;
      if (ref.digest && ref.digest !== digest) {
        throw new RegistryPullError(
          502,
          `pulling ${reference}: the registry served a manifest of digest ${digest}`,
        );
      }
      for (;;) {
        const running = this.inFlight.get(digest);
        if (!running) break;
        await untilSettledOrAborted(running, controls.signal, reference);
      }
      let finished!: () => void;
      this.inFlight.set(digest, new Promise<void>((resolve) => (finished = resolve)));
      try {
        const present = await steps.present(digest);
        if (present !== undefined) return present;
        // By digest from here on: what is checked is what skopeo copies, even if the tag moves meanwhile.
        manifestBytes ??= await fetch(digest);
        if (manifestBytes.digest !== digest) {
          throw new RegistryPullError(
            502,
            `pulling ${reference}: the registry named digest ${digest} and served a manifest of digest ${manifestBytes.digest}`,
          );
        }
        const manifest = parseManifest(manifestBytes.raw.toString('utf8'));
        // An index: this host's platform's manifest is what is copied.
        let source = `${ref.repository}@${digest}`;
        let layers = manifest.layers ?? [];
        if (manifest.manifests) {
          const chosen = pickPlatform(manifest.manifests, reference);
          const child = await fetch(chosen.digest);
          if (child.digest !== chosen.digest) {
            throw new RegistryPullError(
              502,
              `pulling ${reference}: the registry served a manifest of digest ${child.digest} for ${chosen.digest}`,
            );
          }
          source = `${ref.repository}@${chosen.digest}`;
          layers = parseManifest(child.raw.toString('utf8')).layers ?? [];
        }
        this.checkDeclaredSizes(layers, reference);
        const resolved: ResolvedImage = {
          digest,
          layers: layers.map((layer) => ({ digest: layer.digest, size: layer.size })),
        };
        steps.starting(resolved);
        const scratchDir = await this.deps.bundles.scratchDirectory('pull');
        try {
          const access = await this.registries.access(ref.registry, scratchDir, controls.credentials);
          const image = await this.copyAndUnpack(source, reference, access, scratchDir, resolved, controls);
          this.deps.logger.info({ image: reference, digest }, 'image pulled');
          return await steps.commit(image, resolved);
        } finally {
          await discardTree(scratchDir);
        }
      } finally {
        this.inFlight.delete(digest);
        finished();
      }
    } catch (error) {
      throw registryError(error, reference);
    }
  }

  /**
   * `docker login`: the credentials are checked against the registry (skopeo login), then kept for pulls that
   * bring none of their own. Only the registry host is ever logged, never the user or password.
   */
  async login(registry: string, credentials: PullCredentials): Promise<void> {
    const scratchDir = await this.deps.bundles.scratchDirectory('login');
    try {
      const access = await this.registries.access(registry, scratchDir, credentials);
      await this.deps.tools.checkLogin(registry, access, scratchDir);
      await this.registries.remember(registry, credentials);
      this.deps.logger.info({ registry }, 'registry login succeeded');
    } catch (error) {
      const answer = registryError(error, registry);
      if (answer instanceof RegistryPullError && answer.status === 404) {
        throw new RegistryPullError(502, answer.message);
      }
      throw answer;
    } finally {
      await discardTree(scratchDir);
    }
  }

  private async copyAndUnpack(
    source: string,
    reference: string,
    access: RegistryAccess,
    scratchDir: string,
    resolved: ResolvedImage,
    controls: PullControls,
  ): Promise<UnpackedImage> {
    const layout = join(scratchDir, 'oci');
    const watch = controls.onProgress
      ? watchCopy(layout, resolved.layers, controls.onProgress, this.deps.progressIntervalMs ?? 500)
      : undefined;
    try {
      await this.deps.tools.copyFromRegistry(source, access, layout, 'pulled', scratchDir, {
        signal: controls.signal,
      });
    } finally {
      await watch?.stop();
    }
    const image = await readLayoutImage(layout, 'pulled');
    await this.checkPlatformOf(layout, image.configDigest, reference);
    await checkLayerSizes(image.layers, this.deps.bundles.maxArchiveBytes);
    controls.onExtracting?.();
    const target = join(scratchDir, 'unpacked');
    await this.deps.tools.unpack(layout, 'pulled', target, scratchDir);
    if (controls.signal.aborted) throw new RegistryPullError(499, `pull of ${reference} cancelled`);
    return {
      names: [],
      run: image.run,
      configDigest: image.configDigest,
      rootfs: join(target, 'rootfs'),
      scratchDir,
    };
  }

  /** A layer the manifest declares larger than --max-layer-bytes is refused before anything is copied. */
  private checkDeclaredSizes(layers: RemoteLayer[], reference: string): void {
    const limit = this.deps.maxLayerBytes;
    if (limit === undefined) return;
    const over = layers.find((layer) => layer.size > limit);
    if (over) {
      throw new RegistryPullError(
        413,
        `pulling ${reference}: layer ${over.digest} is ${over.size} bytes, over the layer quota of ${limit} bytes (--max-layer-bytes); nothing was downloaded`,
      );
    }
  }

  /** A single manifest (no index) of another architecture is only known by its config, once copied. */
  private async checkPlatformOf(layout: string, configDigest: string, reference: string): Promise<void> {
    const config = ConfigPlatform.safeParse(
      JSON.parse(await readFile(join(layout, 'blobs', ...configDigest.split(':')), 'utf8')),
    );
    const architecture = config.success ? config.data.architecture : undefined;
    const os = config.success ? config.data.os : undefined;
    if ((architecture && architecture !== HOST_ARCHITECTURE) || (os && os !== 'linux')) {
      throw new RegistryPullError(
        404,
        `pulling ${reference}: the image is for ${os ?? 'linux'}/${architecture}, and this host runs linux/${HOST_ARCHITECTURE}`,
        'platform',
      );
    }
  }
}

function parseManifest(raw: string): z.infer<typeof RawManifest> {
  try {
    const parsed = RawManifest.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : {};
  } catch {
    return {};
  }
}

function pickPlatform(
  manifests: NonNullable<z.infer<typeof RawManifest>['manifests']>,
  reference: string,
): { digest: string } {
  const chosen = manifests.find(
    (entry) =>
      (entry.platform?.os ?? 'linux') === 'linux' &&
      (entry.platform?.architecture ?? HOST_ARCHITECTURE) === HOST_ARCHITECTURE,
  );
  if (chosen) return chosen;
  const offered = [
    ...new Set(
      manifests.map((entry) => `${entry.platform?.os ?? '?'}/${entry.platform?.architecture ?? '?'}`),
    ),
  ];
  throw new RegistryPullError(
    404,
    `pulling ${reference}: the registry has no manifest for linux/${HOST_ARCHITECTURE}, only for ${offered.join(', ')}; nothing was downloaded`,
    'platform',
  );
}

/** Waits for another pull of the same digest; a client that goes away meanwhile stops waiting. */
async function untilSettledOrAborted(
  running: Promise<void>,
  signal: AbortSignal,
  reference: string,
): Promise<void> {
  if (signal.aborted)
    throw new RegistryPullError(499, `pull of ${reference} cancelled: the client went away`);
  let onAbort!: () => void;
  const aborted = new Promise<void>((_resolve, reject) => {
    onAbort = () =>
      reject(new RegistryPullError(499, `pull of ${reference} cancelled: the client went away`));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([running, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * skopeo tells nothing of bytes when its stdout is not a terminal, so the copy's bytes are counted on disk: a
 * finished blob is a file named by its digest in blobs/sha256, a blob being written a temporary file in the
 * layout. Blobs are started in the manifest's order, so the temporary files (oldest first) are the started,
 * unfinished layers in that order; the count is exact in total and per layer for one layer at a time.
 */
function watchCopy(
  layout: string,
  layers: RemoteLayer[],
  report: (layers: LayerProgress[]) => void,
  intervalMs: number,
): { stop(): Promise<void> } {
  let last = '';
  let running: Promise<void> | undefined;
  const count = async () => {
    const done = new Set<string>();
    const partial: Array<{ size: number; birth: number }> = [];
    const blobs = join(layout, 'blobs', 'sha256');
    for (const name of await readdir(blobs).catch(() => [] as string[])) {
      if (/^[a-f0-9]{64}$/.test(name)) done.add(`sha256:${name}`);
      else await statInto(join(blobs, name), partial);
    }
    for (const name of await readdir(layout).catch(() => [] as string[])) {
      if (!['blobs', 'index.json', 'oci-layout'].includes(name)) await statInto(join(layout, name), partial);
    }
    partial.sort((a, b) => a.birth - b.birth);
    const progress = layers.map((layer) => {
      if (done.has(layer.digest))
        return { digest: layer.digest, current: layer.size, total: layer.size, done: true };
      return { digest: layer.digest, current: 0, total: layer.size, done: false };
    });
    for (const entry of progress.filter((layer) => !layer.done)) {
      const file = partial.shift();
      if (!file) break;
      entry.current = Math.min(file.size, entry.total);
    }
    const key = JSON.stringify(progress);
    if (key !== last) {
      last = key;
      report(progress);
    }
  };
  const timer = setInterval(() => {
    if (!running) running = count().finally(() => (running = undefined));
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
      await count();
    },
  };
}

async function statInto(path: string, into: Array<{ size: number; birth: number }>): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (info?.isFile()) into.push({ size: info.size, birth: info.birthtimeMs || info.ctimeMs });
}
