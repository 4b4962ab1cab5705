import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tarStream from 'tar-stream';
import { z } from 'zod';
import type { ImageTools } from '../runtime/image-tools.js';
import type { BundleService } from './bundle-service.js';
import { layoutManifest, type PushSource } from './image-pusher.js';
import { discardTree } from './rootfs-writer.js';

/**
 * `docker save`: each image's rootfs becomes an OCI image (as for a push) in one layout in a private scratch
 * directory, and the answer is a tar of that layout with Docker's manifest.json beside it, the form Docker 25
 * and newer write: `docker load` of any Docker reads manifest.json (RepoTags, Config, Layers, gzip layers
 * included), containerd and skopeo read the OCI index (names in `io.containerd.image.name`). Everything is made
 * before the answer starts, so a failure keeps its status code; the scratch directory goes once the tar is sent
 * or the client went away.
 */

export interface SaveItem extends PushSource {
  /** The names the archive gives the image (its RepoTags). */
  names: string[];
}

export interface SavedArchive {
  stream: Readable;
}

const ManifestConfig = z.object({ config: z.object({ digest: z.string() }) });
const MANIFEST_MEDIA_TYPE = 'application/vnd.oci.image.manifest.v1+json';

export class ImageSaver {
  constructor(private readonly deps: { bundles: BundleService; tools: ImageTools }) {}

  async save(items: SaveItem[], signal: AbortSignal): Promise<SavedArchive> {
    const scratchDir = await this.deps.bundles.scratchDirectory('save');
    try {
      const layout = join(scratchDir, 'oci');
      const dockerManifest: Array<{ Config: string; RepoTags: string[]; Layers: string[] }> = [];
      const index: Array<Record<string, unknown>> = [];
      const blobs = new Set<string>();
      for (const [n, item] of items.entries()) {
        const tag = `image-${n}`;
        await this.deps.tools.imageOfTree(layout, tag, item.rootfs, item.defaults, scratchDir, signal);
        const manifest = await layoutManifest(layout, tag);
        const config = ManifestConfig.parse(
          JSON.parse(await readFile(blobFile(layout, manifest.digest), 'utf8')),
        ).config.digest;
        for (const digest of [manifest.digest, config, ...manifest.layers.map((layer) => layer.digest)])
          blobs.add(digest);
        dockerManifest.push({
          Config: blobName(config),
          RepoTags: item.names,
          Layers: manifest.layers.map((layer) => blobName(layer.digest)),
        });
        for (const name of item.names.length > 0 ? item.names : [undefined]) {
          index.push({
            mediaType: MANIFEST_MEDIA_TYPE,
            digest: manifest.digest,
            size: manifest.size,
            ...(name
              ? {
                  annotations: {
                    'io.containerd.image.name': name,
                    'org.opencontainers.image.ref.name': name.slice(name.lastIndexOf(':') + 1),
                  },
                }
              : {}),
          });
        }
      }
      const files: Array<{ name: string; bytes?: Buffer; path?: string; size: number }> = [
        small('oci-layout', JSON.stringify({ imageLayoutVersion: '1.0.0' })),
        small(
          'index.json',
          JSON.stringify({
            schemaVersion: 2,
            mediaType: 'application/vnd.oci.image.index.v1+json',
            manifests: index,
          }),
        ),
        small('manifest.json', JSON.stringify(dockerManifest)),
      ];
      for (const digest of blobs) {
        const path = blobFile(layout, digest);
        files.push({ name: blobName(digest), path, size: (await stat(path)).size });
      }
      return { stream: tarOf(files, signal, () => discardTree(scratchDir)) };
    } catch (error) {
      await discardTree(scratchDir);
      throw error;
    }
  }
}

function small(name: string, text: string): { name: string; bytes: Buffer; size: number } {
  const bytes = Buffer.from(text);
  return { name, bytes, size: bytes.length };
}

function blobName(digest: string): string {
  const [algorithm, hex] = digest.split(':') as [string, string];
  return `blobs/${algorithm}/${hex}`;
}

function blobFile(layout: string, digest: string): string {
  if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw new Error(`umoci wrote a blob of digest "${digest}"`);
  return join(layout, blobName(digest));
}

/**
 * The tar, entry by entry from the files (back-pressured by the client: nothing is buffered beyond a chunk);
 * `done` runs once it ended, failed or the client left.
 */
function tarOf(
  files: Array<{ name: string; bytes?: Buffer; path?: string; size: number }>,
  signal: AbortSignal,
  done: () => Promise<void>,
): Readable {
  const pack = tarStream.pack();
  const out = new PassThrough();
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    void done();
  };
  out.once('close', finish);
  signal.addEventListener('abort', () => pack.destroy(new Error('the client went away')), { once: true });
  const mtime = new Date(0);
  void (async () => {
    try {
      for (const file of files) {
        if (signal.aborted) throw new Error('the client went away');
        const header = { name: file.name, size: file.size, mode: 0o644, mtime };
        if (file.bytes) {
          pack.entry(header, file.bytes);
          continue;
        }
        const entry = pack.entry(header);
        await pipeline(createReadStream(file.path!), entry);
      }
      pack.finalize();
    } catch (error) {
      pack.destroy(error as Error);
    }
  })();
  pipeline(pack, out).catch(() => {
    out.destroy();
    finish();
  });
  return out;
}
