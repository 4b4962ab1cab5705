import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { DomainError } from '../errors.js';
import { ImageToolError, type ImageTools, type RegistryAccess } from '../runtime/image-tools.js';
import type { BundleService } from './bundle-service.js';
import { checkLayerSizes, ImageArchiveError, readLayoutImage } from './image-archive.js';
import type { UnpackedImage } from './image-loader.js';
import { discardTree, RootfsQuotaError } from './rootfs-writer.js';

/**
 * Pulling `HOST[:PORT]/NAME[:TAG|@DIGEST]` from a registry: skopeo asks the registry for the manifest first (one
 * small request: does the image exist, what is its digest), so an image runcd already has under that digest
 * costs no download at all; otherwise skopeo copies it into an OCI layout in a private scratch directory (blob
 * digests verified, this host's platform picked from an index), its layers are checked against the rootfs
 * quota once decompressed, and umoci unpacks it. The caller commits the unpacked tree into a bundle; the scratch
 * directory goes whatever happens, and an aborted signal (the client went away) kills skopeo or umoci.
 */

/** A registry failure, with the HTTP status Docker's API answers for it and a message naming image and cause. */
export class RegistryPullError extends Error {
  override name = 'RegistryPullError';
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 413 | 499 | 502 | 504,
    message: string,
  ) {
    super(message);
  }
}

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
  /** The layers of a single-platform manifest (empty for an index: the platform's are known after the copy). */
  layers: RemoteLayer[];
}

export interface PullCredentials {
  username: string;
  password: string;
}

export interface PullControls {
  signal: AbortSignal;
  credentials?: PullCredentials | undefined;
  /** A blob skopeo started copying (sha256:...). */
  onBlob?: (digest: string) => void;
}

export interface ImagePullerDeps {
  bundles: BundleService;
  tools: ImageTools;
  logger: Logger;
  insecureRegistries: readonly string[];
  /** `certs.d` in the state dir: `certs.d/HOST:PORT/*.crt` are the CAs of that registry, as with dockerd. */
  certsDir?: string;
  /** Credentials `docker login` checked, per registry: a containers-auth.json, mode 0600, in the state dir. */
  authStore?: string;
}

const RawManifest = z.object({
  layers: z.array(z.object({ digest: z.string(), size: z.number() })).optional(),
});

export class ImagePuller {
  constructor(private readonly deps: ImagePullerDeps) {}

  /**
   * Asks the registry for the manifest, then: `present(digest)` says whether runcd already has it (then nothing
   * is copied and `reuse` commits); otherwise the image is copied and unpacked and `commit` makes it a bundle.
   */
  async pull<T>(
    ref: PullReference,
    controls: PullControls,
    steps: {
      resolved(image: ResolvedImage): Promise<T | undefined>;
      commit(image: UnpackedImage, resolved: ResolvedImage): Promise<T>;
    },
  ): Promise<T> {
    const reference = referenceString(ref);
    const scratchDir = await this.deps.bundles.scratchDirectory('pull');
    try {
      const access = await this.access(ref.registry, scratchDir, controls.credentials);
      const raw = await this.deps.tools.inspectRemote(reference, access, scratchDir, controls.signal);
      const resolved: ResolvedImage = {
        digest: `sha256:${createHash('sha256').update(raw).digest('hex')}`,
        layers: layersOf(raw),
      };
      if (ref.digest && ref.digest !== resolved.digest) {
        throw new RegistryPullError(
          502,
          `pulling ${reference}: the registry served a manifest of digest ${resolved.digest}`,
        );
      }
      const present = await steps.resolved(resolved);
      if (present !== undefined) return present;
      const layout = join(scratchDir, 'oci');
      await this.deps.tools.copyFromRegistry(reference, access, layout, 'pulled', scratchDir, {
        signal: controls.signal,
        onLine: (line) => {
          const blob = /^Copying blob (sha256:[a-f0-9]{64})/.exec(line);
          if (blob) controls.onBlob?.(blob[1]!);
        },
      });
      const image = await readLayoutImage(layout, 'pulled');
      await checkLayerSizes(image.layers, this.deps.bundles.maxArchiveBytes);
      const target = join(scratchDir, 'unpacked');
      await this.deps.tools.unpack(layout, 'pulled', target, scratchDir);
      if (controls.signal.aborted) throw new RegistryPullError(499, `pull of ${reference} cancelled`);
      this.deps.logger.info({ image: reference, digest: resolved.digest }, 'image pulled');
      return await steps.commit(
        {
          names: [],
          run: image.run,
          configDigest: image.configDigest,
          rootfs: join(target, 'rootfs'),
          scratchDir,
        },
        resolved,
      );
    } catch (error) {
      throw pullError(error, reference);
    } finally {
      await discardTree(scratchDir);
    }
  }

  /**
   * `docker login`: the credentials are checked against the registry (skopeo login), then kept for pulls that
   * bring none of their own. Only the registry host is ever logged, never the user or password.
   */
  async login(registry: string, credentials: PullCredentials): Promise<void> {
    const scratchDir = await this.deps.bundles.scratchDirectory('login');
    try {
      const access = await this.access(registry, scratchDir, credentials);
      await this.deps.tools.checkLogin(registry, access, scratchDir);
      if (this.deps.authStore) {
        const auths = await this.storedAuths();
        auths[registry] = { auth: basicAuth(credentials) };
        const temporary = `${this.deps.authStore}.tmp`;
        await writeFile(temporary, JSON.stringify({ auths }), { mode: 0o600 });
        await chmod(temporary, 0o600);
        await rename(temporary, this.deps.authStore);
      }
      this.deps.logger.info({ registry }, 'registry login succeeded');
    } catch (error) {
      const answer = pullError(error, registry);
      if (answer instanceof RegistryPullError && answer.status === 404) {
        throw new RegistryPullError(502, answer.message);
      }
      throw answer;
    } finally {
      await discardTree(scratchDir);
    }
  }

  private async storedAuths(): Promise<Record<string, { auth: string }>> {
    if (!this.deps.authStore) return {};
    try {
      const parsed = JSON.parse(await readFile(this.deps.authStore, 'utf8')) as {
        auths?: Record<string, { auth: string }>;
      };
      return parsed.auths ?? {};
    } catch {
      return {};
    }
  }

  /**
   * The registry's transport, and its credentials as a containers-auth.json in the scratch directory (mode
   * 0600, removed with it): on skopeo's argv they would show in `ps` and in runcd's audit log.
   */
  private async access(
    registry: string,
    scratchDir: string,
    credentials: PullCredentials | undefined,
  ): Promise<RegistryAccess> {
    const insecure = this.deps.insecureRegistries.includes(registry.toLowerCase());
    const certDir = this.deps.certsDir ? join(this.deps.certsDir, registry) : undefined;
    const hasCerts = certDir !== undefined && (await stat(certDir).catch(() => undefined))?.isDirectory();
    const access: RegistryAccess = { insecure, ...(hasCerts ? { certDir } : {}) };
    const auth = credentials ? basicAuth(credentials) : (await this.storedAuths())[registry]?.auth;
    if (!auth) return access;
    const authDir = join(scratchDir, 'auth');
    await mkdir(authDir, { mode: 0o700 });
    const authFile = join(authDir, 'auth.json');
    await writeFile(authFile, JSON.stringify({ auths: { [registry]: { auth } } }), { mode: 0o600 });
    return { ...access, authFile };
  }
}

function basicAuth(credentials: PullCredentials): string {
  return Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');
}

function layersOf(raw: string): RemoteLayer[] {
  try {
    const parsed = RawManifest.safeParse(JSON.parse(raw));
    return parsed.success ? (parsed.data.layers ?? []) : [];
  } catch {
    return [];
  }
}

/** skopeo's words for a registry failure become a status and a sentence naming the image and the cause. */
function pullError(error: unknown, reference: string): unknown {
  if (error instanceof RegistryPullError || error instanceof DomainError) return error;
  if (error instanceof RootfsQuotaError) {
    return new RegistryPullError(413, `pulling ${reference}: ${error.message}`);
  }
  if (error instanceof ImageArchiveError) {
    return new RegistryPullError(502, `pulling ${reference}: ${error.message}`);
  }
  if (!(error instanceof ImageToolError)) return error;
  const words = error.toolMessage;
  const cause = (status: RegistryPullError['status'], what: string) =>
    new RegistryPullError(status, `pulling ${reference}: ${what} (${words})`);
  switch (error.kind) {
    case 'cancelled':
      return new RegistryPullError(499, `pull of ${reference} cancelled: the client went away`);
    case 'timeout':
      return cause(504, 'the registry did not answer in time');
    case 'unavailable':
      return cause(502, 'skopeo cannot be run on the runcd host (apt-get install -y skopeo umoci)');
    case 'failed':
      break;
  }
  if (/manifest unknown|name unknown|repository name not known|not found/i.test(words)) {
    return cause(404, 'no such image or tag in the registry');
  }
  // 403, not 401: on a 401 the docker CLI prompts for a password on its stdin, which a script never answers.
  if (
    /unauthorized|authentication required|denied|401|reading username|credentials are invalid/i.test(words)
  ) {
    return cause(403, 'the registry refused the credentials (docker login HOST, or send X-Registry-Auth)');
  }
  if (/server gave HTTP response to HTTPS client/i.test(words)) {
    return cause(502, 'the registry speaks plain HTTP; list it with --insecure-registry HOST:PORT');
  }
  if (/x509|certificate|tls:/i.test(words)) return cause(502, 'TLS failure talking to the registry');
  if (/no image found in image index|no matching manifest|platform/i.test(words)) {
    return cause(404, 'the registry has no manifest for this platform');
  }
  if (/connection refused|no such host|dial tcp|i\/o timeout|network is unreachable|pinging/i.test(words)) {
    return cause(502, 'the registry is unreachable');
  }
  return cause(502, 'the registry copy failed');
}
