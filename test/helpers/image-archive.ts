import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { buildTar, type TarEntry } from './tar-builder.js';

/**
 * `docker save` archives made without a Docker engine: umoci builds an OCI image from a rootfs directory, skopeo
 * turns it into Docker's archive form, and a tar of the layout directory is the OCI form. Hostile layouts are
 * written blob by blob, so a test can put exactly the layer it means into one.
 */

function run(binary: string, ...args: string[]): void {
  execFileSync(binary, args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

export interface ImageDefaults {
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
}

/** An OCI layout at `layout` whose image `latest` is `rootfs` with these defaults; returns the layout path. */
export function buildOciLayout(work: string, rootfs: string, defaults: ImageDefaults): string {
  const layout = join(work, 'layout');
  const unpacked = join(work, 'unpacked');
  run('umoci', 'init', '--layout', layout);
  run('umoci', 'new', '--image', `${layout}:latest`);
  run('umoci', 'unpack', '--image', `${layout}:latest`, unpacked);
  run('cp', '-a', `${rootfs}/.`, join(unpacked, 'rootfs'));
  run('umoci', 'repack', '--image', `${layout}:latest`, unpacked);
  const flags = [
    ...(defaults.entrypoint ?? []).flatMap((arg) => ['--config.entrypoint', arg]),
    ...(defaults.cmd ?? []).flatMap((arg) => ['--config.cmd', arg]),
    ...(defaults.env ?? []).flatMap((entry) => ['--config.env', entry]),
    ...(defaults.workingDir ? ['--config.workingdir', defaults.workingDir] : []),
  ];
  if (flags.length > 0) run('umoci', 'config', '--image', `${layout}:latest`, ...flags);
  return layout;
}

/** Docker's archive form (manifest.json with RepoTags) of image `latest` of a layout, named `name`. */
export function dockerArchiveOf(layout: string, file: string, name: string): string {
  run(
    'skopeo',
    '--insecure-policy',
    'copy',
    '--quiet',
    `oci:${layout}:latest`,
    `docker-archive:${file}:${name}`,
  );
  return file;
}

/** The OCI form: `name` tagged in the layout (a full reference as ref.name), then a tar of the layout directory. */
export function ociArchiveOf(layout: string, file: string, name: string): string {
  run('umoci', 'tag', '--image', `${layout}:latest`, name);
  run('tar', '-C', layout, '-cf', file, '.');
  return file;
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/**
 * A tar of an OCI layout whose one image has the given layer (a tar; stored gzip-compressed with gzipLayer) and
 * ref.name.
 * Built by hand, so the layer can hold whatever a hostile archive would.
 */
export async function handmadeOciArchive(
  dir: string,
  layer: Buffer,
  refName: string,
  options: { gzipLayer?: boolean } = {},
): Promise<Buffer> {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const blob = (bytes: Buffer) => {
    const digest = sha256(bytes);
    writeFileSync(join(dir, 'blobs', 'sha256', digest), bytes);
    return { digest: `sha256:${digest}`, size: bytes.length };
  };
  const layerBlob = blob(options.gzipLayer ? gzipSync(layer) : layer);
  const diffId = `sha256:${sha256(layer)}`;
  const config = blob(
    Buffer.from(
      JSON.stringify({
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
        os: 'linux',
        config: { Cmd: ['sh'] },
        rootfs: { type: 'layers', diff_ids: [diffId] },
      }),
    ),
  );
  const manifest = blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [
          {
            mediaType: `application/vnd.oci.image.layer.v1.tar${options.gzipLayer ? '+gzip' : ''}`,
            ...layerBlob,
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
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': refName },
        },
      ],
    }),
  );
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return execFileSync('tar', ['-C', dir, '-cf', '-', '.'], { maxBuffer: 256 * 1024 * 1024 });
}

export { buildTar, type TarEntry };
