import { once } from 'node:events';
import { pipeline, Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tarStream from 'tar-stream';
import { RootfsEntryError, RootfsQuotaError, type RootfsWriter } from './rootfs-writer.js';

/**
 * Streams a tarball (gzip-compressed or not: told apart by its first bytes, so any Content-Type curl sends
 * works) into a RootfsWriter, entry by entry, without ever holding it in memory. `maxArchiveBytes` caps both the
 * bytes received and the bytes after decompression, so neither a huge upload nor a gzip bomb of padding can
 * keep runcd busy forever; the writer caps what lands on disk.
 */
export async function extractTarball(
  body: Readable,
  writer: RootfsWriter,
  maxArchiveBytes: number,
): Promise<void> {
  const extract = tarStream.extract();
  let feedError: unknown;
  const feeding = feed(body, extract, maxArchiveBytes).catch((error: unknown) => {
    feedError = error;
    extract.destroy(error as Error);
  });
  try {
    for await (const entry of extract) {
      const header = entry.header;
      const meta = {
        mode: header.mode ?? 0o644,
        uid: header.uid ?? 0,
        gid: header.gid ?? 0,
        mtime: header.mtime ?? new Date(0),
      };
      switch (header.type) {
        case 'file':
        case 'contiguous-file':
          await writer.file(header.name, meta, entry as unknown as AsyncIterable<Buffer>);
          break;
        case 'directory':
          await writer.directory(header.name, meta);
          break;
        case 'symlink':
          await writer.symlink(header.name, header.linkname ?? '', meta);
          break;
        case 'link':
          await writer.hardlink(header.name, header.linkname ?? '');
          break;
        default:
          writer.refuse(header.name, header.type ?? 'unknown entry');
      }
      entry.resume();
    }
    await feeding;
    if (feedError) throw feedError;
  } catch (error) {
    const cause = feedError ?? error;
    // The rest of the body is left unread: node discards it once the error response is sent.
    extract.destroy(new Error('extraction stopped'));
    await feeding;
    throw archiveError(cause);
  }
  if (writer.entryCount === 0) {
    throw new RootfsEntryError('rootfs_invalid_archive', 'the archive is empty: no entries');
  }
}

const GZIP_MAGIC = [0x1f, 0x8b];

async function feed(body: Readable, extract: tarStream.Extract, maxArchiveBytes: number): Promise<void> {
  for await (const chunk of archiveBytes(body, maxArchiveBytes)) {
    if (extract.destroyed) return;
    if (!extract.write(chunk)) await Promise.race([once(extract, 'drain'), once(extract, 'close')]);
  }
  extract.end(undefined);
}

/**
 * The bytes of a tar archive sent as `body`, gunzipped when its first bytes say gzip. Throws a RootfsQuotaError
 * once more than `maxArchiveBytes` arrive, or come out of the decompressor.
 */
export async function* archiveBytes(body: Readable, maxArchiveBytes: number): AsyncGenerator<Buffer> {
  const iterator = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) return;
  const firstChunk = first.value;
  let received = 0;
  const limited = (source: AsyncIterable<Buffer>, what: string) =>
    (async function* () {
      for await (const chunk of source) {
        received += chunk.length;
        if (received > maxArchiveBytes) {
          throw new RootfsQuotaError(`the archive is larger than ${maxArchiveBytes} bytes ${what}`);
        }
        yield chunk;
      }
    })();
  const raw = Readable.from(
    limited(
      (async function* () {
        yield firstChunk;
        for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
      })(),
      'as uploaded',
    ),
  );
  if (!(firstChunk[0] === GZIP_MAGIC[0] && firstChunk[1] === GZIP_MAGIC[1])) {
    yield* raw as AsyncIterable<Buffer>;
    return;
  }
  const gunzip = createGunzip();
  pipeline(raw, gunzip, () => undefined);
  let inflated = 0;
  for await (const chunk of gunzip as AsyncIterable<Buffer>) {
    inflated += chunk.length;
    if (inflated > maxArchiveBytes) {
      throw new RootfsQuotaError(`the archive is larger than ${maxArchiveBytes} bytes once decompressed`);
    }
    yield chunk;
  }
}

export function archiveError(error: unknown): unknown {
  if (error instanceof RootfsEntryError || error instanceof RootfsQuotaError) return error;
  const message = (error as Error).message ?? String(error);
  const code = (error as NodeJS.ErrnoException).code;
  if (
    /tar header|unexpected end|premature|incorrect header check|invalid|unexpected/i.test(message) ||
    code?.startsWith('Z_')
  ) {
    return new RootfsEntryError(
      'rootfs_invalid_archive',
      `the body is not a tar archive (plain or gzip-compressed): ${message}`,
    );
  }
  return error;
}
