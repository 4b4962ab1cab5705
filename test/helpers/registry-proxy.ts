import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';

/**
 * A plain-HTTP proxy on a loopback port in front of a test registry, that counts what clients ask for and can
 * hold or slow blob downloads: a pull through it is as slow, or as stuck, as a test needs, and the test knows
 * which blobs were fetched how often. Closed at teardown with every connection it holds.
 */
export interface RegistryProxy {
  /** `127.0.0.1:PORT` */
  host: string;
  /** GETs of each blob digest (sha256:...) so far. */
  blobGets: Map<string, number>;
  /** Manifest requests (GET or HEAD) so far, per `NAME:REF`. */
  manifestRequests: Map<string, number>;
  /** Blob GETs wait until release() (the registry has answered their headers only then). */
  hold(): void;
  release(): void;
  /** Blob bodies are sent in chunks of this many bytes, one every `delayMs` (0: as fast as they come). */
  throttle(chunkBytes: number, delayMs: number): void;
  blobGetCount(): number;
}

export async function startRegistryProxy(t: Test, upstream: string): Promise<RegistryProxy> {
  const [upstreamHost, upstreamPort] = upstream.split(':') as [string, string];
  const blobGets = new Map<string, number>();
  const manifestRequests = new Map<string, number>();
  let held: Array<() => void> | undefined;
  let chunkBytes = 0;
  let delayMs = 0;
  const open = new Set<ServerResponse>();
  let self = '';
  const forward = (request: IncomingMessage, response: ServerResponse) => {
    const upstreamRequest = httpRequest(
      {
        host: upstreamHost,
        port: Number(upstreamPort),
        method: request.method,
        path: request.url,
        headers: { ...request.headers, host: upstream },
      },
      (upstreamResponse) => {
        const headers = { ...upstreamResponse.headers };
        // Redirects and Location headers name the upstream; the client must keep talking to the proxy.
        if (typeof headers.location === 'string') headers.location = headers.location.replace(upstream, self);
        response.writeHead(upstreamResponse.statusCode ?? 502, headers);
        const blob = /\/blobs\/sha256:/.test(request.url ?? '') && request.method === 'GET';
        if (!blob || chunkBytes === 0) {
          upstreamResponse.pipe(response);
          return;
        }
        void (async () => {
          for await (const chunk of upstreamResponse as AsyncIterable<Buffer>) {
            for (let offset = 0; offset < chunk.length; offset += chunkBytes) {
              if (response.destroyed) return;
              response.write(chunk.subarray(offset, offset + chunkBytes));
              if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
            }
          }
          response.end();
        })().catch(() => response.destroy());
      },
    );
    upstreamRequest.on('error', () => response.destroy());
    request.pipe(upstreamRequest);
  };
  const server = createServer((request, response) => {
    open.add(response);
    response.on('close', () => open.delete(response));
    const url = request.url ?? '';
    const blob = /\/blobs\/(sha256:[a-f0-9]{64})/.exec(url);
    if (blob && request.method === 'GET') blobGets.set(blob[1]!, (blobGets.get(blob[1]!) ?? 0) + 1);
    const manifest = /^\/v2\/(.+)\/manifests\/([^/?]+)/.exec(url);
    if (manifest) {
      const key = `${manifest[1]}:${manifest[2]}`;
      manifestRequests.set(key, (manifestRequests.get(key) ?? 0) + 1);
    }
    if (blob && request.method === 'GET' && held) {
      held.push(() => forward(request, response));
      return;
    }
    forward(request, response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  self = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.teardown(() => {
    for (const response of open) response.destroy();
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    host: self,
    blobGets,
    manifestRequests,
    hold() {
      held ??= [];
    },
    release() {
      const waiting = held ?? [];
      held = undefined;
      for (const go of waiting) go();
    },
    throttle(bytes, ms) {
      chunkBytes = bytes;
      delayMs = ms;
    },
    blobGetCount() {
      return [...blobGets.values()].reduce((sum, count) => sum + count, 0);
    },
  };
}

/** Processes whose command line has every one of `needles` (skopeo runs with the reference on its argv). */
export function processesMentioning(...needles: string[]): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return needles.every((needle) => cmdline.includes(needle));
      } catch {
        return false;
      }
    })
    .map(Number);
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/**
 * An OCI layout whose image `latest` is an index with one manifest, for `architecture` only (not this host's):
 * the pull must refuse it before any layer moves. Pushed with `skopeo copy --all`.
 */
export function otherPlatformLayout(dir: string, architecture: string): string {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const blob = (bytes: Buffer) => {
    const digest = sha256(bytes);
    writeFileSync(join(dir, 'blobs', 'sha256', digest), bytes);
    return { digest: `sha256:${digest}`, size: bytes.length };
  };
  const layerTar = execFileSync('tar', ['-cf', '-', '--files-from', '/dev/null']);
  const layer = blob(execFileSync('gzip', ['-c'], { input: layerTar }));
  const config = blob(
    Buffer.from(
      JSON.stringify({
        architecture,
        os: 'linux',
        config: { Cmd: ['sh'] },
        rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(layerTar)}`] },
      }),
    ),
  );
  const manifest = blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
      }),
    ),
  );
  const index = blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            ...manifest,
            platform: { architecture, os: 'linux' },
          },
        ],
      }),
    ),
  );
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.index.v1+json',
          ...index,
          annotations: { 'org.opencontainers.image.ref.name': 'latest' },
        },
      ],
    }),
  );
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return dir;
}

/** A layer of `bytes` random (incompressible) bytes on top of image `latest` of a layout, as /big. */
export function addRandomLayer(layout: string, work: string, bytes: number): void {
  const unpacked = join(work, `random-${randomBytes(3).toString('hex')}`);
  const run = (...args: string[]) => execFileSync('umoci', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  run('unpack', '--image', `${layout}:latest`, unpacked);
  writeFileSync(join(unpacked, 'rootfs', 'big'), randomBytes(bytes));
  run('repack', '--image', `${layout}:latest`, unpacked);
  rmSync(unpacked, { recursive: true, force: true });
}

/** A second layer over image `latest` of a layout: adds /etc/layer2 and deletes /etc/motd-one (a whiteout). */
export function addWhiteoutLayer(layout: string, work: string): void {
  const unpacked = join(work, 'second');
  const run = (...args: string[]) => execFileSync('umoci', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  run('unpack', '--image', `${layout}:latest`, unpacked);
  writeFileSync(join(unpacked, 'rootfs', 'etc', 'layer2'), 'from layer two\n');
  rmSync(join(unpacked, 'rootfs', 'etc', 'motd-one'));
  run('repack', '--image', `${layout}:latest`, unpacked);
  rmSync(unpacked, { recursive: true, force: true });
}

/** Pushes image `latest` of a layout, all of its platforms (an index stays an index), over plain HTTP. */
export function seedAll(registryHost: string, layout: string, repoTag: string): void {
  execFileSync(
    'skopeo',
    [
      '--insecure-policy',
      'copy',
      '--quiet',
      '--all',
      '--dest-tls-verify=false',
      `oci:${layout}:latest`,
      `docker://${registryHost}/${repoTag}`,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
}
