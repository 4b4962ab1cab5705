import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { ImageDefaults, ImageTools, RegistryAccess } from '../runtime/image-tools.js';
import type { BundleService } from './bundle-service.js';
import type { PullReference } from './image-puller.js';
import {
  type PullCredentials,
  RegistryAccessProvider,
  type RegistryAccessOptions,
  RegistryPullError,
  registryError,
} from './registry-access.js';
import { discardTree } from './rootfs-writer.js';

/**
 * `docker push`: runcd keeps an image as an unpacked rootfs (shared by its tags and containers), not as layers,
 * so a push first makes an OCI image of that tree in a private scratch directory (umoci: one layer, the image's
 * run defaults as its config, no history), then skopeo copies it to the registry with the same transport and
 * credential rules as a pull. The scratch directory goes whatever happens; an aborted signal kills the tool.
 */

export interface PushSource {
  /** The image's rootfs directory (its bundle's). */
  rootfs: string;
  defaults: ImageDefaults;
}

export interface PushedLayer {
  digest: string;
  size: number;
}

export interface PushControls {
  signal: AbortSignal;
  credentials?: PullCredentials | undefined;
  /** The image was made and is about to be copied: its layers. */
  onPrepared?: (layers: PushedLayer[]) => void;
  /** skopeo started copying a blob (the registry answered: the push is under way); `exists` when it skipped it. */
  onBlob?: (digest: string, exists: boolean) => void;
}

export interface PushResult {
  /** The manifest digest the registry now serves for the tag. */
  digest: string;
  /** Bytes of that manifest (Docker reports it: "TAG: digest: D size: N"). */
  size: number | undefined;
  layers: PushedLayer[];
}

export interface ImagePusherDeps extends RegistryAccessOptions {
  bundles: BundleService;
  tools: ImageTools;
  logger: Logger;
}

const LayoutIndex = z.object({
  manifests: z.array(
    z.object({
      digest: z.string(),
      size: z.number(),
      annotations: z.record(z.string(), z.string()).optional(),
    }),
  ),
});
const LayoutManifest = z.object({ layers: z.array(z.object({ digest: z.string(), size: z.number() })) });
const TAG = 'push';

export class ImagePusher {
  private readonly registries: RegistryAccessProvider;

  constructor(private readonly deps: ImagePusherDeps) {
    this.registries = new RegistryAccessProvider(deps);
  }

  async push(source: PushSource, target: PullReference, controls: PushControls): Promise<PushResult> {
    const reference = `${target.repository}:${target.tag ?? 'latest'}`;
    const scratchDir = await this.deps.bundles.scratchDirectory('push');
    try {
      const layout = join(scratchDir, 'oci');
      await this.deps.tools.imageOfTree(
        layout,
        TAG,
        source.rootfs,
        source.defaults,
        scratchDir,
        controls.signal,
      );
      const manifest = await layoutManifest(layout, TAG);
      controls.onPrepared?.(manifest.layers);
      const access = await this.registries.access(target.registry, scratchDir, controls.credentials);
      await this.preflight(reference, access, scratchDir, controls.signal);
      const digestFile = join(scratchDir, 'digest');
      await this.deps.tools.copyToRegistry(layout, TAG, reference, access, scratchDir, digestFile, {
        signal: controls.signal,
        onLine: (line) => {
          const blob = /^Copying blob (sha256:[a-f0-9]{64})(.*)$/.exec(line);
          if (blob) controls.onBlob?.(blob[1]!, /skipped|already exists/i.test(blob[2]!));
        },
      });
      if (controls.signal.aborted) throw new RegistryPullError(499, `push of ${reference} cancelled`);
      const digest = (await readFile(digestFile, 'utf8')).trim();
      if (!/^sha256:[a-f0-9]{64}$/.test(digest)) {
        throw new RegistryPullError(502, `pushing ${reference}: skopeo reported no manifest digest`);
      }
      this.deps.logger.info({ image: reference, digest }, 'image pushed');
      return {
        digest,
        size: digest === manifest.digest ? manifest.size : undefined,
        layers: manifest.layers,
      };
    } catch (error) {
      throw registryError(error, reference, 'pushing');
    } finally {
      await discardTree(scratchDir);
    }
  }

  /**
   * skopeo prints "Copying blob" before it first talks to the destination, so nothing in its output tells that
   * the registry is there and takes these credentials. One manifest request first does: an unknown tag is what
   * a first push meets (fine); an unreachable registry, a TLS failure or refused credentials end the push here,
   * before the answer starts, with their status codes. (A registry that lets a user read but not write still
   * refuses during the copy, as a last stream message.)
   */
  private async preflight(
    reference: string,
    access: RegistryAccess,
    scratchDir: string,
    signal: AbortSignal,
  ): Promise<void> {
    try {
      await this.deps.tools.inspectRemote(reference, access, scratchDir, signal);
    } catch (error) {
      const answer = registryError(error, reference, 'pushing');
      if (answer instanceof RegistryPullError && answer.status === 404) return;
      throw answer;
    }
  }
}

/** The manifest of image `tag` of a layout umoci wrote: its digest and size, and its layers. */
export async function layoutManifest(
  layout: string,
  tag: string,
): Promise<{ digest: string; size: number; layers: PushedLayer[] }> {
  const index = LayoutIndex.parse(JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')));
  const descriptor = index.manifests.find(
    (entry) => entry.annotations?.['org.opencontainers.image.ref.name'] === tag,
  );
  if (!descriptor) throw new Error(`umoci wrote no image ${tag} into ${layout}`);
  const blob = join(layout, 'blobs', ...descriptor.digest.split(':'));
  if ((await stat(blob)).size > 4 * 1024 * 1024)
    throw new Error(`manifest ${descriptor.digest} is too large`);
  const manifest = LayoutManifest.parse(JSON.parse(await readFile(blob, 'utf8')));
  return { digest: descriptor.digest, size: descriptor.size, layers: manifest.layers };
}
