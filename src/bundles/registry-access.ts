import { chmod, mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { DomainError } from '../errors.js';
import { ImageToolError, type RegistryAccess } from '../runtime/image-tools.js';
import { ImageArchiveError } from './image-archive.js';
import type { RegistryEndpoint } from './registry-client.js';
import { RootfsQuotaError } from './rootfs-writer.js';

/**
 * How runcd reaches a registry, shared by pulls, pushes and `docker login`: plain HTTP only for the registries
 * the operator listed (--insecure-registry), dockerd's `certs.d/HOST:PORT/*.crt` CAs, and credentials written as
 * a containers-auth.json (mode 0600) into the caller's scratch directory, never onto skopeo's argv (which `ps`
 * and the audit log show). Credentials `docker login` checked are kept in the state dir, mode 0600.
 */

/** A registry failure, with the HTTP status Docker's API answers for it and a message naming image and cause. */
export class RegistryPullError extends Error {
  override name = 'RegistryPullError';
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 413 | 499 | 502 | 504,
    message: string,
    /** What went wrong, for the native API's error code. */
    readonly reason:
      | 'reference'
      | 'credentials'
      | 'not_found'
      | 'platform'
      | 'too_large'
      | 'cancelled'
      | 'timeout'
      | 'unreachable' = statusCause(status),
  ) {
    super(message);
  }
}

function statusCause(status: RegistryPullError['status']): RegistryPullError['reason'] {
  switch (status) {
    case 400:
      return 'reference';
    case 401:
    case 403:
      return 'credentials';
    case 404:
      return 'not_found';
    case 413:
      return 'too_large';
    case 499:
      return 'cancelled';
    case 504:
      return 'timeout';
    case 502:
      return 'unreachable';
  }
}

export interface PullCredentials {
  username: string;
  password: string;
}

export interface RegistryAccessOptions {
  insecureRegistries: readonly string[];
  /** `certs.d` in the state dir: `certs.d/HOST:PORT/*.crt` are the CAs of that registry, as with dockerd. */
  certsDir?: string | undefined;
  /** Credentials `docker login` checked, per registry: a containers-auth.json, mode 0600, in the state dir. */
  authStore?: string | undefined;
}

export class RegistryAccessProvider {
  constructor(private readonly options: RegistryAccessOptions) {}

  /**
   * The registry's transport, and its credentials (the caller's, else those `docker login` kept) as a
   * containers-auth.json in the scratch directory, mode 0600, removed with it.
   */
  async access(
    registry: string,
    scratchDir: string,
    credentials: PullCredentials | undefined,
  ): Promise<RegistryAccess> {
    const insecure = this.options.insecureRegistries.includes(registry.toLowerCase());
    const certDir = this.options.certsDir ? join(this.options.certsDir, registry) : undefined;
    const hasCerts = certDir !== undefined && (await stat(certDir).catch(() => undefined))?.isDirectory();
    const access: RegistryAccess = { insecure, ...(hasCerts ? { certDir } : {}) };
    const auth = credentials ? basicAuth(credentials) : (await this.storedAuths())[registry]?.auth;
    if (!auth) return access;
    const authDir = join(scratchDir, 'auth');
    await mkdir(authDir, { recursive: true, mode: 0o700 });
    const authFile = join(authDir, 'auth.json');
    await writeFile(authFile, JSON.stringify({ auths: { [registry]: { auth } } }), { mode: 0o600 });
    return { ...access, authFile };
  }

  /**
   * The same registry settings for runcd's own manifest requests: the certs.d CAs (`*.crt`) added to the system
   * ones and a client certificate (`*.cert` with its `*.key`), as containers/image reads a cert-dir; the
   * credentials in memory only.
   */
  async endpoint(registry: string, credentials: PullCredentials | undefined): Promise<RegistryEndpoint> {
    const insecure = this.options.insecureRegistries.includes(registry.toLowerCase());
    const auth = credentials ? basicAuth(credentials) : (await this.storedAuths())[registry]?.auth;
    const tls: RegistryEndpoint['tls'] = {};
    if (this.options.certsDir) {
      const certDir = join(this.options.certsDir, registry);
      const names = (await readdir(certDir).catch(() => [] as string[])).sort();
      const cas = names.filter((name) => name.endsWith('.crt'));
      if (cas.length > 0) {
        tls.ca = [
          ...rootCertificates,
          ...(await Promise.all(cas.map((name) => readFile(join(certDir, name))))),
        ];
      }
      const cert = names.find((name) => name.endsWith('.cert'));
      const key = cert && names.find((name) => name === `${cert.slice(0, -'.cert'.length)}.key`);
      if (cert && key) {
        tls.cert = await readFile(join(certDir, cert));
        tls.key = await readFile(join(certDir, key));
      }
    }
    return { registry, insecure, tls, ...(auth ? { auth } : {}) };
  }

  /** Keeps credentials that were checked against the registry, replacing the file whole (mode 0600). */
  async remember(registry: string, credentials: PullCredentials): Promise<void> {
    if (!this.options.authStore) return;
    const auths = await this.storedAuths();
    auths[registry] = { auth: basicAuth(credentials) };
    const temporary = `${this.options.authStore}.tmp`;
    await writeFile(temporary, JSON.stringify({ auths }), { mode: 0o600 });
    await chmod(temporary, 0o600);
    await rename(temporary, this.options.authStore);
  }

  private async storedAuths(): Promise<Record<string, { auth: string }>> {
    if (!this.options.authStore) return {};
    try {
      const parsed = JSON.parse(await readFile(this.options.authStore, 'utf8')) as {
        auths?: Record<string, { auth: string }>;
      };
      return parsed.auths ?? {};
    } catch {
      return {};
    }
  }
}

function basicAuth(credentials: PullCredentials): string {
  return Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');
}

/**
 * skopeo's words for a registry failure become a status and a sentence naming the image and the cause
 * (`verb` is "pulling" or "pushing"). The tool's words never hold credentials: skopeo reads them from a file.
 */
export function registryError(error: unknown, reference: string, verb = 'pulling'): unknown {
  if (error instanceof RegistryPullError || error instanceof DomainError) return error;
  if (error instanceof RootfsQuotaError) {
    return new RegistryPullError(413, `${verb} ${reference}: ${error.message}`);
  }
  if (error instanceof ImageArchiveError) {
    return new RegistryPullError(502, `${verb} ${reference}: ${error.message}`);
  }
  if (!(error instanceof ImageToolError)) return error;
  const words = error.toolMessage;
  const cause = (status: RegistryPullError['status'], what: string, kind?: RegistryPullError['reason']) =>
    new RegistryPullError(status, `${verb} ${reference}: ${what} (${words})`, kind);
  const noun = verb === 'pushing' ? 'push' : 'pull';
  switch (error.kind) {
    case 'cancelled':
      return new RegistryPullError(499, `${noun} of ${reference} cancelled: the client went away`);
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
    return cause(404, 'the registry has no manifest for this platform', 'platform');
  }
  if (/connection refused|no such host|dial tcp|i\/o timeout|network is unreachable|pinging/i.test(words)) {
    return cause(502, 'the registry is unreachable');
  }
  return cause(502, `the registry ${verb === 'pushing' ? 'upload' : 'copy'} failed`);
}
