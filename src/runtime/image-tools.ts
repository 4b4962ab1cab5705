import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DomainError } from '../errors.js';
import type { ProcessRunner, RunOptions, RunResult } from './process-runner.js';

/**
 * Debian's `skopeo` and `umoci`, the offline image tools behind `docker load`: one method per command, argv
 * built here and nowhere else, every call through the ProcessRunner (clean environment, no shell, stdin closed, a
 * deadline, counted and audited like the runc calls). Both only ever read and write inside a work directory the
 * caller made for one load: HOME and TMPDIR point into it, so neither tool reads a user's configuration or leaves
 * big temp files in /var/tmp.
 */

/** Where skopeo reads an image from. */
export type ImageSource =
  /** A `docker save` tarball (manifest.json); `index` picks one of its images, as `docker-archive:PATH:@N`. */
  | { transport: 'docker-archive'; path: string; index: number }
  /** An OCI image layout directory and the `org.opencontainers.image.ref.name` of one of its manifests. */
  | { transport: 'oci'; path: string; reference: string };

/** How skopeo reaches one registry. */
export interface RegistryAccess {
  /** Plain HTTP (or TLS without verification): only for registries the operator listed (--insecure-registry). */
  insecure: boolean;
  /** A containers-auth.json file (mode 0600, in the work directory): credentials never go on an argv. */
  authFile?: string;
  /** A directory of `*.crt` CA files the registry's certificate must chain to (dockerd's certs.d/HOST:PORT). */
  certDir?: string;
}

/** The run defaults an exported image's config gets (umoci config's flags). */
export interface ImageDefaults {
  entrypoint?: string[] | undefined;
  cmd?: string[] | undefined;
  env?: string[] | undefined;
  workingDir?: string | undefined;
  user?: string | undefined;
  /** RFC 3339: the image config's `created`. */
  created?: string | undefined;
}

/** Per-call controls of a registry copy. */
export interface CopyControls {
  signal?: AbortSignal;
  /** skopeo's progress lines ("Copying blob sha256:..."), one at a time. */
  onLine?: (line: string) => void;
}

/** skopeo or umoci failed; `toolMessage` is the tool's own last words. */
export class ImageToolError extends Error {
  override name = 'ImageToolError';
  constructor(
    readonly tool: string,
    readonly toolMessage: string,
    /** failed: it ran and refused; timeout: killed at the deadline; unavailable: it could not be run at all. */
    readonly kind: 'failed' | 'timeout' | 'unavailable' | 'cancelled',
  ) {
    super(`${tool}: ${toolMessage}`);
  }
}

export interface ImageToolsOptions {
  runner: ProcessRunner;
  skopeoBinary?: string;
  umociBinary?: string;
  /** Deadline of one copy or unpack; they take time in proportion to the image. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10 * 60_000;
/** An OCI reference the tools accept (the ref.name grammar, colon-free so it cannot split a transport string). */
const TAG_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export class ImageTools {
  readonly skopeo: string;
  readonly umoci: string;
  private readonly runner: ProcessRunner;
  private readonly timeoutMs: number;

  constructor(options: ImageToolsOptions) {
    this.runner = options.runner;
    this.skopeo = options.skopeoBinary ?? 'skopeo';
    this.umoci = options.umociBinary ?? 'umoci';
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /**
   * `skopeo copy SOURCE oci:LAYOUT:TAG`: any source form becomes one OCI layout, with blob digests verified and,
   * for an image index, the manifest of this host's platform picked.
   */
  async copyToLayout(source: ImageSource, layout: string, tag: string, workDir: string): Promise<void> {
    await this.run(this.skopeo, workDir, [
      '--insecure-policy', // a local copy between two directories runcd made: no signatures to check
      'copy',
      '--quiet',
      sourceArgument(source),
      `oci:${pathPart(layout)}:${tagPart(tag)}`,
    ]);
  }

  /**
   * `skopeo inspect --raw docker://REFERENCE`: the registry's manifest (or image index) bytes, one small request
   * that tells whether the image exists and what its digest is before any layer moves.
   */
  async inspectRemote(
    reference: string,
    access: RegistryAccess,
    workDir: string,
    signal?: AbortSignal,
  ): Promise<string> {
    return this.run(
      this.skopeo,
      workDir,
      ['inspect', '--raw', '--retry-times', '0', ...registryFlags('', access), dockerReference(reference)],
      signal ? { signal } : {},
    );
  }

  /**
   * `skopeo login HOST` with the credentials already in the auth file: skopeo checks them against the registry
   * ("Existing credentials are valid") without a password on its argv; with stdin closed, invalid ones fail.
   */
  async checkLogin(registry: string, access: RegistryAccess, workDir: string): Promise<void> {
    if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$/.test(registry))
      throw new Error(`registry "${registry}" is not HOST[:PORT]`);
    await this.run(this.skopeo, workDir, ['login', ...registryFlags('', access), registry]);
  }

  /** `skopeo copy docker://REFERENCE oci:LAYOUT:TAG`, the host's platform picked from an image index. */
  async copyFromRegistry(
    reference: string,
    access: RegistryAccess,
    layout: string,
    tag: string,
    workDir: string,
    controls: CopyControls = {},
  ): Promise<void> {
    await this.run(
      this.skopeo,
      workDir,
      [
        // The source is the registry the caller named; signature policy is the operator's business, not runcd's
        // (Debian ships no /etc/containers/policy.json for skopeo to read).
        '--insecure-policy',
        'copy',
        '--retry-times',
        '0',
        ...registryFlags('src-', access),
        dockerReference(reference),
        `oci:${pathPart(layout)}:${tagPart(tag)}`,
      ],
      {
        ...(controls.signal ? { signal: controls.signal } : {}),
        onStdout: lineSplitter((line) => controls.onLine?.(line)),
      },
    );
  }

  /** `skopeo copy oci:LAYOUT:TAG docker://REFERENCE`: a push; the manifest digest skopeo wrote goes to `digestFile`. */
  async copyToRegistry(
    layout: string,
    tag: string,
    reference: string,
    access: RegistryAccess,
    workDir: string,
    digestFile: string,
    controls: CopyControls = {},
  ): Promise<void> {
    await this.run(
      this.skopeo,
      workDir,
      [
        '--insecure-policy',
        'copy',
        '--retry-times',
        '0',
        ...registryFlags('dest-', access),
        '--digestfile',
        pathPart(digestFile),
        `oci:${pathPart(layout)}:${tagPart(tag)}`,
        dockerReference(reference),
      ],
      {
        ...(controls.signal ? { signal: controls.signal } : {}),
        onStdout: lineSplitter((line) => controls.onLine?.(line)),
      },
    );
  }

  /**
   * An OCI image of a rootfs directory, for a push or `docker save` (runcd keeps images as unpacked trees, not
   * layers): `umoci new` makes an empty image TAG in LAYOUT (made first with `umoci init` when absent), `umoci
   * insert` adds the tree as its one layer (tar+gzip, ownership, modes, xattrs and hard links as they are on
   * disk), and `umoci config` writes the run defaults. No history entries: they would carry the time of the
   * export, and two exports of one image would differ.
   */
  async imageOfTree(
    layout: string,
    tag: string,
    rootfs: string,
    defaults: ImageDefaults,
    workDir: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const extra = signal ? { signal } : {};
    const image = `${pathPart(layout)}:${tagPart(tag)}`;
    const hasLayout = await stat(join(layout, 'oci-layout')).then(
      () => true,
      () => false,
    );
    if (!hasLayout)
      await this.run(this.umoci, workDir, ['--log', 'error', 'init', '--layout', pathPart(layout)], extra);
    await this.run(this.umoci, workDir, ['--log', 'error', 'new', '--image', image], extra);
    await this.run(
      this.umoci,
      workDir,
      ['--log', 'error', 'insert', '--no-history', '--image', image, rootfs, '/'],
      extra,
    );
    const flags = [
      ...(defaults.entrypoint ?? []).flatMap((arg) => ['--config.entrypoint', arg]),
      ...(defaults.cmd ?? []).flatMap((arg) => ['--config.cmd', arg]),
      ...(defaults.env ?? []).flatMap((entry) => ['--config.env', entry]),
      ...(defaults.workingDir ? ['--config.workingdir', defaults.workingDir] : []),
      ...(defaults.user ? ['--config.user', defaults.user] : []),
      ...(defaults.created ? ['--created', defaults.created] : []),
    ];
    await this.run(
      this.umoci,
      workDir,
      ['--log', 'error', 'config', '--no-history', '--image', image, ...flags],
      extra,
    );
  }

  /**
   * `umoci unpack`: applies the layers of image TAG in order into TARGET/rootfs. umoci resolves every path and
   * symlink inside the rootfs it builds (a `../` entry or a symlink to `/` lands inside it) and applies OCI
   * whiteouts; TARGET must not exist yet.
   */
  async unpack(layout: string, tag: string, target: string, workDir: string): Promise<void> {
    await this.run(this.umoci, workDir, [
      '--log',
      'error',
      'unpack',
      '--image',
      `${pathPart(layout)}:${tagPart(tag)}`,
      target,
    ]);
  }

  private async run(
    binary: string,
    workDir: string,
    argv: string[],
    extra: Pick<RunOptions, 'signal' | 'onStdout'> = {},
  ): Promise<string> {
    const tmp = join(workDir, 'tmp');
    await mkdir(tmp, { recursive: true, mode: 0o700 });
    let result: RunResult;
    try {
      result = await this.runner.run(binary, argv, {
        timeoutMs: this.timeoutMs,
        env: { HOME: workDir, TMPDIR: tmp },
        ...extra,
      });
    } catch (error) {
      if (error instanceof DomainError) throw error; // the runner's own refusal (too busy)
      throw new ImageToolError(binary, (error as Error).message, 'unavailable');
    }
    if (extra.signal?.aborted) {
      throw new ImageToolError(binary, 'cancelled: the client went away', 'cancelled');
    }
    if (result.timedOut) {
      throw new ImageToolError(
        binary,
        `did not finish within ${this.timeoutMs} ms and was killed`,
        'timeout',
      );
    }
    if (result.exitCode !== 0) {
      throw new ImageToolError(
        binary,
        toolMessage(result.stderr) || `exited with status ${result.exitCode}`,
        'failed',
      );
    }
    return result.stdout;
  }
}

/** Whole trimmed non-empty lines of a stream that arrives in chunks. */
function lineSplitter(onLine: (line: string) => void): (chunk: Buffer) => void {
  let pending = '';
  return (chunk) => {
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) onLine(line.trim());
  };
}

function registryFlags(prefix: '' | 'src-' | 'dest-', access: RegistryAccess): string[] {
  return [
    `--${prefix}tls-verify=${access.insecure ? 'false' : 'true'}`,
    ...(access.authFile ? [`--${prefix}authfile`, pathPart(access.authFile)] : []),
    ...(access.certDir ? [`--${prefix}cert-dir`, access.certDir] : []),
  ];
}

/** A registry reference (`HOST:PORT/NAME:TAG` or `...@sha256:HEX`), checked by the caller's parser. */
function dockerReference(reference: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,511}$/.test(reference)) {
    throw new Error(`image reference "${reference}" is not a plain registry reference`);
  }
  return `docker://${reference}`;
}

function sourceArgument(source: ImageSource): string {
  return source.transport === 'docker-archive'
    ? `docker-archive:${pathPart(source.path)}:@${source.index}`
    : `oci:${pathPart(source.path)}:${tagPart(source.reference)}`;
}

/** A colon would end the path inside a transport string; runcd's own work paths never have one. */
function pathPart(path: string): string {
  if (path.includes(':')) throw new Error(`image tool path "${path}" contains a colon`);
  return path;
}

function tagPart(tag: string): string {
  if (!TAG_PATTERN.test(tag)) throw new Error(`image tool tag "${tag}" is not a plain tag`);
  return tag;
}

/**
 * skopeo logs `time="..." level=fatal msg="..."`; umoci prints `   ⨯ message`. Take the message of the last
 * such line, or the last non-empty line.
 */
export function toolMessage(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const last = lines.at(-1) ?? '';
  const logfmt = /\bmsg="((?:[^"\\]|\\.)*)"/.exec(last);
  if (logfmt) return logfmt[1]!.replace(/\\"/g, '"');
  return last.replace(/^⨯\s*/, '');
}
