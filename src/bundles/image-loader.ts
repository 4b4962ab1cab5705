import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import {
  ContentTooLargeError,
  DomainError,
  InvalidInputError,
  RuntimeFailureError,
  TimeoutError,
} from '../errors.js';
import { ImageToolError, type ImageTools } from '../runtime/image-tools.js';
import type { BundleService } from './bundle-service.js';
import {
  checkLayerSizes,
  ImageArchiveError,
  type ImageRunConfig,
  readArchive,
  readLayoutImage,
  stageArchive,
} from './image-archive.js';
import { discardTree, RootfsEntryError, RootfsQuotaError } from './rootfs-writer.js';

/** An image of the archive, unpacked and ready to become bundles. */
export interface UnpackedImage {
  /** The names the archive gives it, as written there (`docker.io/library/bb:latest`, `bb:latest`). */
  names: string[];
  run: ImageRunConfig;
  /** sha256 of its image config (Docker's image id). */
  configDigest: string;
  /** The unpacked rootfs, for BundleService.createFromUnpacked. */
  rootfs: string;
  scratchDir: string;
}

export interface LoadSteps<T> {
  /** Sees the names before anything is unpacked, so a load that cannot be committed is refused cheaply. */
  check(images: ReadonlyArray<{ names: string[] }>): void;
  /** Makes bundles of the unpacked images; the scratch directory is removed after it, whatever happens. */
  commit(images: UnpackedImage[]): Promise<T>;
}

export interface ImageLoaderDeps {
  bundles: BundleService;
  tools: ImageTools;
  logger: Logger;
}

/**
 * `docker load`: a `docker save` archive (Docker's own form or an OCI layout) becomes unpacked rootfs trees.
 * Everything happens in a fresh private scratch directory in the bundle root: the archive is staged there under
 * the archive quota, each image is copied by skopeo into one OCI layout (digests verified), its layers are
 * checked against the quota once decompressed, and umoci unpacks it. The caller's `commit` then copies each
 * rootfs into a bundle through the RootfsWriter, so an image gets exactly the rules of an uploaded rootfs.
 */
export class ImageLoader {
  constructor(private readonly deps: ImageLoaderDeps) {}

  async load<T>(body: Readable, contentLength: number | undefined, steps: LoadSteps<T>): Promise<T> {
    const maxBytes = this.deps.bundles.maxArchiveBytes;
    if (contentLength !== undefined && contentLength > maxBytes) {
      throw new ContentTooLargeError(
        'image_archive_too_large',
        `the archive (${contentLength} bytes) is larger than ${maxBytes} bytes, twice the rootfs quota (--max-rootfs-bytes) plus 16 MiB`,
      );
    }
    const scratchDir = await this.deps.bundles.scratchDirectory('load');
    try {
      const archive = join(scratchDir, 'archive.tar');
      const size = await stageArchive(body, archive, maxBytes);
      const received = join(scratchDir, 'received');
      await mkdir(received, { mode: 0o700 });
      const images = await readArchive(archive, received);
      steps.check(images);
      const layout = join(scratchDir, 'oci');
      const unpacked: UnpackedImage[] = [];
      for (const [n, image] of images.entries()) {
        const tag = `image-${n}`;
        await this.deps.tools.copyToLayout(image.source, layout, tag, scratchDir);
        const layoutImage = await readLayoutImage(layout, tag);
        await checkLayerSizes(layoutImage.layers, maxBytes);
        const target = join(scratchDir, `unpacked-${n}`);
        await this.deps.tools.unpack(layout, tag, target, scratchDir);
        unpacked.push({
          names: image.names,
          run: layoutImage.run,
          configDigest: layoutImage.configDigest,
          rootfs: join(target, 'rootfs'),
          scratchDir,
        });
      }
      this.deps.logger.info({ archiveBytes: size, images: unpacked.length }, 'image archive unpacked');
      return await steps.commit(unpacked);
    } catch (error) {
      throw loadError(error);
    } finally {
      await discardTree(scratchDir);
    }
  }
}

function loadError(error: unknown): unknown {
  if (error instanceof DomainError) return error;
  if (error instanceof ImageArchiveError || error instanceof RootfsEntryError) {
    return new InvalidInputError(error.code, error.message);
  }
  if (error instanceof RootfsQuotaError) {
    return new ContentTooLargeError('image_archive_too_large', error.message);
  }
  if (error instanceof ImageToolError) {
    switch (error.kind) {
      case 'failed':
        return new InvalidInputError(
          'image_archive_invalid',
          `the archive could not be unpacked: ${error.message}`,
        );
      case 'timeout':
        return new TimeoutError('image_tool_timeout', error.message);
      case 'unavailable':
        return new RuntimeFailureError(
          'image_tools_missing',
          `loading images needs skopeo and umoci on the runcd host (apt-get install -y skopeo umoci): ${error.message}`,
        );
    }
  }
  return error;
}
