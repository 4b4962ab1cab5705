import { gzipSync } from 'node:zlib';
import tarStream, { type Header } from 'tar-stream';

export interface TarEntry {
  header: Partial<Header> & { name: string };
  content?: Buffer | string;
}

/** A tarball built entry by entry, so a test can write exactly the hostile archive it means. */
export async function buildTar(entries: TarEntry[], options: { gzip?: boolean } = {}): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack as unknown as AsyncIterable<Buffer>) chunks.push(chunk);
  })();
  for (const entry of entries) {
    await new Promise<void>((resolve, reject) => {
      const content = entry.content === undefined ? undefined : Buffer.from(entry.content);
      const callback = (error?: Error | null) => (error ? reject(error) : resolve());
      if (content === undefined) pack.entry({ mode: 0o644, ...entry.header }, callback);
      else pack.entry({ mode: 0o644, ...entry.header }, content, callback);
    });
  }
  pack.finalize();
  await done;
  const tar = Buffer.concat(chunks);
  return options.gzip ? gzipSync(tar) : tar;
}
