import type { CodeOfKind } from '../error-catalog.js';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tarStream from 'tar-stream';
import { z } from 'zod';
import type { ImageSource } from '../runtime/image-tools.js';
import { RootfsQuotaError } from './rootfs-writer.js';
import { archiveBytes, archiveError } from './tar-extractor.js';

/**
 * Reading an untrusted `docker save` archive without trusting it: the body is staged as one file (gunzipped,
 * capped), its table of contents and small JSON files are read with tar-stream, and only then do skopeo and
 * umoci see it. Two forms are understood:
 *
 * - Docker's archive (`manifest.json`, with `RepoTags`): skopeo reads it in place as `docker-archive:FILE:@N`.
 *   Docker 25 and newer write an OCI layout and a manifest.json side by side; the manifest.json is used then.
 * - An OCI image layout (`oci-layout`, `index.json`, `blobs/`): only blob files with well-formed digest names are
 *   written out (never a link, never another path), and runcd writes its own index.json that names each image
 *   `image-N`, so skopeo can pick it whatever the archive named it.
 */

/** A refusal of the archive itself; the message names the entry or file at fault. */
export class ImageArchiveError extends Error {
  override name = 'ImageArchiveError';
  constructor(
    readonly code: CodeOfKind<'invalid_input'>,
    message: string,
  ) {
    super(message);
  }
}

/** The fields of an image config (`.config`) that `docker run` defaults to. */
export const ImageRunConfig = z.object({
  Entrypoint: z.array(z.string()).nullable().optional(),
  Cmd: z.array(z.string()).nullable().optional(),
  Env: z.array(z.string()).nullable().optional(),
  WorkingDir: z.string().optional(),
  User: z.string().optional(),
});
export type ImageRunConfig = z.infer<typeof ImageRunConfig>;

/** One image of an archive: the names it carries (as written there) and where skopeo reads it. */
export interface ArchiveImage {
  names: string[];
  source: ImageSource;
}

const SMALL_FILE_LIMIT = 4 * 1024 * 1024;
const MAX_IMAGES = 64;
const BLOB_NAME = /^blobs\/(sha256\/[a-f0-9]{64}|sha512\/[a-f0-9]{128})$/;
const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;
const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/** Writes the request body (gunzipped when it is gzip) to `file`, refusing more than `maxBytes`. */
export async function stageArchive(body: Readable, file: string, maxBytes: number): Promise<number> {
  let size = 0;
  const counted = (async function* () {
    for await (const chunk of archiveBytes(body, maxBytes)) {
      size += chunk.length;
      yield chunk;
    }
  })();
  try {
    await pipeline(Readable.from(counted), createWriteStream(file, { flags: 'wx', mode: 0o600 }));
  } catch (error) {
    throw archiveError(error);
  }
  if (size === 0) {
    throw new ImageArchiveError(
      'image_archive_empty',
      'the request body is empty: send the tar archive that docker save writes',
    );
  }
  return size;
}

const DockerManifest = z
  .array(
    z.object({
      Config: z.string(),
      RepoTags: z.array(z.string()).nullable().optional(),
      Layers: z.array(z.string()),
    }),
  )
  .min(1);

const Descriptor = z.object({
  mediaType: z.string().optional(),
  digest: z.string().regex(DIGEST),
  size: z.number().int().nonnegative(),
  annotations: z.record(z.string(), z.string()).optional(),
  platform: z.record(z.string(), z.unknown()).optional(),
});
const OciIndex = z.object({ manifests: z.array(Descriptor).min(1) });
type Descriptor = z.infer<typeof Descriptor>;

const IMAGE_NAME_ANNOTATION = 'io.containerd.image.name';
const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

/**
 * The images in a staged archive. For an OCI layout the blobs are written to `layoutDir` (with runcd's own
 * index.json); a Docker archive stays where it is.
 */
export async function readArchive(file: string, layoutDir: string): Promise<ArchiveImage[]> {
  const contents = await scanArchive(file);
  const manifest = contents.files.get('manifest.json');
  if (manifest !== undefined) {
    const entries = parseJson(DockerManifest, manifest, 'manifest.json');
    checkImageCount(entries.length);
    return entries.map((entry, index) => ({
      names: entry.RepoTags ?? [],
      source: { transport: 'docker-archive', path: file, index },
    }));
  }
  const index = contents.files.get('index.json');
  if (index === undefined || !contents.files.has('oci-layout')) {
    throw new ImageArchiveError(
      'image_archive_invalid',
      `the archive is a tar file but not one docker save writes: it has neither manifest.json nor an OCI layout (oci-layout and index.json)${contents.firstNames.length > 0 ? `; it starts with ${contents.firstNames.map((name) => `"${name}"`).join(', ')}` : ''}`,
    );
  }
  const descriptors = parseJson(OciIndex, index, 'index.json').manifests;
  const byDigest = new Map<string, { descriptor: Descriptor; names: string[] }>();
  for (const descriptor of descriptors) {
    const image = byDigest.get(descriptor.digest) ?? { descriptor, names: [] };
    byDigest.set(descriptor.digest, image);
    const name = ociImageName(descriptor);
    if (name !== undefined && !image.names.includes(name)) image.names.push(name);
  }
  checkImageCount(byDigest.size);
  await extractBlobs(file, layoutDir);
  const images = [...byDigest.values()];
  const ownIndex = {
    schemaVersion: 2,
    manifests: images.map(({ descriptor }, n) => ({
      ...(descriptor.mediaType ? { mediaType: descriptor.mediaType } : {}),
      digest: descriptor.digest,
      size: descriptor.size,
      ...(descriptor.platform ? { platform: descriptor.platform } : {}),
      annotations: { [REF_NAME_ANNOTATION]: `image-${n}` },
    })),
  };
  await writeFile(join(layoutDir, 'index.json'), JSON.stringify(ownIndex), { flag: 'wx', mode: 0o600 });
  await writeFile(join(layoutDir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}', { flag: 'wx' });
  return images.map(({ names }, n) => ({
    names,
    source: { transport: 'oci', path: layoutDir, reference: `image-${n}` },
  }));
}

/**
 * containerd (and so Docker 25+) names an image in `io.containerd.image.name`; the OCI spec's ref.name is often
 * only a tag ("latest"), which names no repository, so it counts only when it is a full reference.
 */
function ociImageName(descriptor: Descriptor): string | undefined {
  const full = descriptor.annotations?.[IMAGE_NAME_ANNOTATION];
  if (full) return full;
  const ref = descriptor.annotations?.[REF_NAME_ANNOTATION];
  return ref !== undefined && /[:/]/.test(ref) ? ref : undefined;
}

function checkImageCount(count: number): void {
  if (count > MAX_IMAGES) {
    throw new ImageArchiveError(
      'image_archive_too_many_images',
      `the archive holds ${count} images; runcd loads at most ${MAX_IMAGES} at once`,
    );
  }
}

function parseJson<T>(schema: z.ZodType<T>, bytes: Buffer, file: string): T {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new ImageArchiveError('image_archive_invalid', `${file} is not JSON: ${(error as Error).message}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ImageArchiveError(
      'image_archive_invalid',
      `${file} is not what docker save writes: ${issue?.path.join('.') || '(top level)'}: ${issue?.message ?? ''}`,
    );
  }
  return parsed.data;
}

/** `./a/b/` → `a/b`; an absolute name or one with `..` is refused: no docker save archive has one. */
function entryName(raw: string): string {
  const name = raw.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
  if (raw.startsWith('/') || name.split('/').includes('..')) {
    throw new ImageArchiveError(
      'image_archive_entry_outside',
      `archive entry "${raw}" points outside the archive; docker save never writes one`,
    );
  }
  return name;
}

const SMALL_FILES = new Set(['manifest.json', 'index.json', 'oci-layout']);

async function scanArchive(file: string): Promise<{ files: Map<string, Buffer>; firstNames: string[] }> {
  const files = new Map<string, Buffer>();
  const firstNames: string[] = [];
  await forEachEntry(file, async (header, entry) => {
    const name = entryName(header.name);
    if (firstNames.length < 3) firstNames.push(name);
    if (!SMALL_FILES.has(name)) return;
    if (header.type !== 'file' && header.type !== 'contiguous-file') {
      throw new ImageArchiveError('image_archive_invalid', `${name} in the archive is not a regular file`);
    }
    if (files.has(name)) {
      throw new ImageArchiveError('image_archive_invalid', `the archive holds ${name} twice`);
    }
    files.set(name, await readSmall(entry, name));
  });
  return { files, firstNames };
}

async function extractBlobs(file: string, layoutDir: string): Promise<void> {
  await mkdir(join(layoutDir, 'blobs', 'sha256'), { recursive: true, mode: 0o700 });
  await mkdir(join(layoutDir, 'blobs', 'sha512'), { mode: 0o700 });
  await forEachEntry(file, async (header, entry) => {
    const name = entryName(header.name);
    if (!BLOB_NAME.test(name)) return;
    if (header.type !== 'file' && header.type !== 'contiguous-file') {
      throw new ImageArchiveError(
        'image_archive_invalid',
        `blob ${name} in the archive is a ${header.type ?? 'special entry'}; an OCI layout holds its blobs as regular files`,
      );
    }
    // The directories are runcd's own and the name is a digest: O_EXCL is all that is left to guard (a blob twice).
    try {
      await pipeline(
        entry,
        createWriteStream(join(layoutDir, ...name.split(posix.sep)), { flags: 'wx', mode: 0o600 }),
      );
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ImageArchiveError('image_archive_invalid', `the archive holds ${name} twice`);
      }
      throw error;
    }
  });
}

type EntryHandler = (header: tarStream.Header, entry: Readable) => Promise<void>;

async function forEachEntry(file: string, handle: EntryHandler): Promise<void> {
  const extract = tarStream.extract();
  const reading = pipeline(createReadStream(file), extract).catch((error: unknown) => {
    extract.destroy(error as Error);
  });
  let entries = 0;
  try {
    for await (const entry of extract) {
      entries++;
      await handle(entry.header, entry as unknown as Readable);
      entry.resume();
    }
  } catch (error) {
    extract.destroy();
    await reading;
    if (error instanceof ImageArchiveError || error instanceof RootfsQuotaError) throw error;
    throw new ImageArchiveError(
      'image_archive_invalid',
      `the body is not a tar archive as docker save writes it: ${(error as Error).message}`,
    );
  }
  await reading;
  if (entries === 0) {
    throw new ImageArchiveError('image_archive_empty', 'the archive has no entries');
  }
}

async function readSmall(entry: Readable, name: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of entry as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > SMALL_FILE_LIMIT) {
      throw new ImageArchiveError(
        'image_archive_invalid',
        `${name} is larger than ${SMALL_FILE_LIMIT} bytes`,
      );
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** What runcd needs of one image of a normalized OCI layout (one skopeo wrote): its run config and layers. */
export interface LayoutImage {
  run: ImageRunConfig;
  /** sha256 of the image config: Docker's image id. */
  configDigest: string;
  layers: string[];
}

const ManifestJson = z.object({
  config: z.object({ digest: z.string().regex(DIGEST) }),
  layers: z.array(z.object({ digest: z.string().regex(DIGEST) })),
});
const ConfigJson = z.object({ config: ImageRunConfig.nullable().optional() });

export async function readLayoutImage(layout: string, tag: string): Promise<LayoutImage> {
  const index = parseJson(OciIndex, await readBounded(join(layout, 'index.json')), 'index.json');
  const descriptor = index.manifests.find(
    (candidate) => candidate.annotations?.[REF_NAME_ANNOTATION] === tag,
  );
  if (!descriptor) throw new ImageArchiveError('image_archive_invalid', `no image ${tag} in the layout`);
  const manifest = parseJson(
    ManifestJson,
    await readBounded(blobPath(layout, descriptor.digest)),
    `manifest ${descriptor.digest}`,
  );
  const config = parseJson(
    ConfigJson,
    await readBounded(blobPath(layout, manifest.config.digest)),
    `image config ${manifest.config.digest}`,
  );
  return {
    run: config.config ?? {},
    configDigest: manifest.config.digest,
    layers: manifest.layers.map((layer) => blobPath(layout, layer.digest)),
  };
}

/**
 * Bytes that unpacking these layers writes at most (their tar streams, gunzipped), stopping as soon as the sum
 * passes `maxBytes`: umoci has no quota of its own, and a gzip bomb in a layer must not fill the disk.
 */
export async function checkLayerSizes(layers: string[], maxBytes: number): Promise<number> {
  let total = 0;
  for (const layer of layers) {
    const head = Buffer.alloc(4);
    const handle = await open(layer, 'r');
    try {
      await handle.read(head, 0, 4, 0);
    } finally {
      await handle.close();
    }
    if (ZSTD_MAGIC.every((byte, i) => head[i] === byte)) {
      throw new ImageArchiveError(
        'image_layer_unsupported',
        'a layer is zstd-compressed, which the installed umoci cannot unpack; save the image with gzip or uncompressed layers',
      );
    }
    const gzip = head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1];
    const source = createReadStream(layer);
    const stream = gzip ? source.pipe(createGunzip()) : source;
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > maxBytes) {
          throw new RootfsQuotaError(`the image's layers hold more than ${maxBytes} bytes once decompressed`);
        }
      }
    } catch (error) {
      if (error instanceof RootfsQuotaError) throw error;
      throw new ImageArchiveError(
        'image_archive_invalid',
        `a layer cannot be decompressed: ${(error as Error).message}`,
      );
    } finally {
      stream.destroy();
      source.destroy();
    }
  }
  return total;
}

function blobPath(layout: string, digest: string): string {
  if (!DIGEST.test(digest)) throw new ImageArchiveError('image_archive_invalid', `bad digest ${digest}`);
  const [algorithm, hex] = digest.split(':') as [string, string];
  return join(layout, 'blobs', algorithm, hex);
}

async function readBounded(path: string): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const size = (await handle.stat()).size;
    if (size > SMALL_FILE_LIMIT) {
      throw new ImageArchiveError(
        'image_archive_invalid',
        `${path} is larger than ${SMALL_FILE_LIMIT} bytes`,
      );
    }
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}
