import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { RegistryPullError } from './registry-access.js';

/**
 * The registry's manifest from Node, one HTTP exchange, instead of a `skopeo inspect` process: what a re-pull of
 * a present image costs (a HEAD of the manifest answers with its digest, Docker-Content-Digest) and what a pull
 * learns before any layer moves (the manifest's bytes, by digest, so what is checked is what skopeo copies).
 * The same rules as skopeo's: TLS verified against the system CAs plus dockerd's certs.d CAs; for a registry the
 * operator listed (--insecure-registry), TLS without verification and then plain HTTP, as containers/image does;
 * credentials only after the registry asked for them (Basic, or the token flow of a Bearer challenge), never
 * logged and never in an error.
 */

/** How one registry is reached, as RegistryAccessProvider resolved it. */
export interface RegistryEndpoint {
  /** `HOST[:PORT]` */
  registry: string;
  insecure: boolean;
  /** CAs (system ones included) when certs.d has some for this registry, and a client certificate. */
  tls: { ca?: Array<string | Buffer>; cert?: Buffer; key?: Buffer };
  /** base64 `USER:PASSWORD`, sent only when the registry challenges. */
  auth?: string | undefined;
}

export interface FetchedManifest {
  /** sha256 of the bytes served. */
  digest: string;
  raw: Buffer;
}

/** The media types Docker's pull accepts, in its order. */
export const MANIFEST_ACCEPT = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');

/** The distribution registry refuses manifests over 4 MiB; nothing larger is read. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** A token answer is small too. */
const MAX_TOKEN_BYTES = 64 * 1024;
const DEFAULT_TIMEOUT_MS = 60_000;
const DIGEST = /^sha256:[a-f0-9]{64}$/;

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

type Scheme = 'https' | 'http';

export class RegistryClient {
  /** For insecure registries: the scheme that answered last, so a plain HTTP one costs no TLS attempt each time. */
  private readonly schemes = new Map<string, Scheme>();

  constructor(private readonly options: { timeoutMs?: number } = {}) {}

  /**
   * HEAD of `NAME:TAG` (or `NAME@DIGEST`): the digest the registry gives in Docker-Content-Digest, or undefined
   * when it gives none (then the caller GETs the manifest and hashes it).
   */
  async manifestDigest(
    endpoint: RegistryEndpoint,
    name: string,
    reference: string,
    what: string,
    signal: AbortSignal,
  ): Promise<string | undefined> {
    const answer = await this.manifestRequest('HEAD', endpoint, name, reference, what, signal);
    const header = answer.headers['docker-content-digest'];
    const digest = Array.isArray(header) ? header[0] : header;
    return digest && DIGEST.test(digest) ? digest : undefined;
  }

  /** GET of the manifest; its digest is that of the bytes served, whatever the headers say. */
  async manifest(
    endpoint: RegistryEndpoint,
    name: string,
    reference: string,
    what: string,
    signal: AbortSignal,
  ): Promise<FetchedManifest> {
    const answer = await this.manifestRequest('GET', endpoint, name, reference, what, signal);
    return { raw: answer.body, digest: `sha256:${createHash('sha256').update(answer.body).digest('hex')}` };
  }

  private async manifestRequest(
    method: 'HEAD' | 'GET',
    endpoint: RegistryEndpoint,
    name: string,
    reference: string,
    what: string,
    signal: AbortSignal,
  ): Promise<Answer> {
    const path = `/v2/${name}/manifests/${reference}`;
    const headers: Record<string, string> = { accept: MANIFEST_ACCEPT };
    let answer = await this.exchange(method, endpoint, path, headers, what, signal, MAX_MANIFEST_BYTES);
    if (answer.status === 401) {
      const authorization = await this.authorize(endpoint, answer.headers, name, what, signal);
      if (authorization !== undefined) {
        answer = await this.exchange(
          method,
          endpoint,
          path,
          { ...headers, authorization },
          what,
          signal,
          MAX_MANIFEST_BYTES,
        );
      }
    }
    if (answer.status === 200) return answer;
    throw statusError(answer.status, what);
  }

  /**
   * The Authorization a 401's challenge asks for: Basic with the credentials, or a Bearer token that the realm
   * gives for `repository:NAME:pull` (with the credentials, if any). Undefined: nothing to answer with.
   */
  private async authorize(
    endpoint: RegistryEndpoint,
    headers: IncomingHttpHeaders,
    name: string,
    what: string,
    signal: AbortSignal,
  ): Promise<string | undefined> {
    const challenge = parseChallenge(headers['www-authenticate']);
    if (challenge?.scheme === 'basic') return endpoint.auth ? `Basic ${endpoint.auth}` : undefined;
    if (challenge?.scheme !== 'bearer' || !challenge.params.realm) return undefined;
    let realm: URL;
    try {
      realm = new URL(challenge.params.realm);
    } catch {
      throw new RegistryPullError(502, `pulling ${what}: the registry's token realm is not a URL`);
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') {
      throw new RegistryPullError(502, `pulling ${what}: the registry's token realm is not http(s)`);
    }
    if (challenge.params.service) realm.searchParams.set('service', challenge.params.service);
    realm.searchParams.set('scope', challenge.params.scope ?? `repository:${name}:pull`);
    const answer = await send(
      realm.protocol === 'https:' ? 'https' : 'http',
      'GET',
      realm,
      endpoint.auth ? { authorization: `Basic ${endpoint.auth}` } : {},
      realm.host === endpoint.registry ? endpoint : { ...endpoint, insecure: false },
      signal,
      this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      MAX_TOKEN_BYTES,
    ).catch((error: unknown) => {
      throw transportError(error, what, endpoint.insecure);
    });
    if (answer.status !== 200) throw statusError(answer.status, what);
    let token: unknown;
    try {
      const parsed = JSON.parse(answer.body.toString('utf8')) as { token?: unknown; access_token?: unknown };
      token = parsed.token ?? parsed.access_token;
    } catch {
      token = undefined;
    }
    if (typeof token !== 'string' || token === '' || /[\r\n]/.test(token)) {
      throw new RegistryPullError(502, `pulling ${what}: the registry's token service gave no token`);
    }
    return `Bearer ${token}`;
  }

  /** One request to the registry; an insecure one is tried over TLS (unverified) first, then plain HTTP. */
  private async exchange(
    method: string,
    endpoint: RegistryEndpoint,
    path: string,
    headers: Record<string, string>,
    what: string,
    signal: AbortSignal,
    maxBytes: number,
  ): Promise<Answer> {
    const timeoutMs = this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const known = this.schemes.get(endpoint.registry);
    const schemes: Scheme[] = !endpoint.insecure ? ['https'] : known ? [known] : ['https', 'http'];
    let failure: unknown;
    for (const scheme of schemes) {
      try {
        const url = new URL(`${scheme}://${endpoint.registry}${path}`);
        const answer = await send(scheme, method, url, headers, endpoint, signal, timeoutMs, maxBytes);
        if (endpoint.insecure) this.schemes.set(endpoint.registry, scheme);
        return answer;
      } catch (error) {
        if (signal.aborted || (error as Error).name === 'TimeoutError') {
          throw transportError(error, what, endpoint.insecure);
        }
        failure = error;
      }
    }
    this.schemes.delete(endpoint.registry);
    throw transportError(failure, what, endpoint.insecure);
  }
}

/** A request with a deadline, the caller's cancellation, and a bound on the body it reads. */
function send(
  scheme: Scheme,
  method: string,
  url: URL,
  headers: Record<string, string>,
  endpoint: RegistryEndpoint,
  signal: AbortSignal,
  timeoutMs: number,
  maxBytes: number,
): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    if (signal.aborted) return reject(abortError());
    const options = {
      method,
      headers: { 'user-agent': 'runcd', ...headers },
      signal,
      timeout: timeoutMs,
    };
    const request =
      scheme === 'https'
        ? httpsRequest(url, {
            ...options,
            rejectUnauthorized: !endpoint.insecure,
            ...endpoint.tls,
            // A fresh connection per request: an agent's pooled TLS session would outlive its CA settings.
            agent: false,
          })
        : httpRequest(url, { ...options, agent: false });
    request.on('timeout', () => {
      const error = new Error(`no answer within ${timeoutMs} ms`);
      error.name = 'TimeoutError';
      request.destroy(error);
    });
    request.on('error', (error) => reject(signal.aborted ? abortError() : error));
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          response.destroy(new Error(`the registry's answer is larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.on('error', (error) => reject(signal.aborted ? abortError() : error));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }),
      );
    });
    request.end();
  });
}

function abortError(): Error {
  const error = new Error('cancelled');
  error.name = 'AbortError';
  return error;
}

/** `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`. */
export function parseChallenge(
  header: string | string[] | undefined,
): { scheme: string; params: Record<string, string> } | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  const match = /^\s*([A-Za-z]+)\s*(.*)$/.exec(value);
  if (!match) return undefined;
  const params: Record<string, string> = {};
  for (const pair of match[2]!.matchAll(/([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
    params[pair[1]!.toLowerCase()] = (pair[2] ?? pair[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme: match[1]!.toLowerCase(), params };
}

function statusError(status: number, what: string): RegistryPullError {
  if (status === 404) {
    return new RegistryPullError(
      404,
      `pulling ${what}: no such image or tag in the registry (manifest unknown)`,
    );
  }
  // 403, not 401: on a 401 the docker CLI prompts for a password on its stdin, which a script never answers.
  if (status === 401 || status === 403) {
    return new RegistryPullError(
      403,
      `pulling ${what}: the registry refused the credentials (docker login HOST, or send X-Registry-Auth) (HTTP ${status})`,
    );
  }
  return new RegistryPullError(502, `pulling ${what}: the registry answered HTTP ${status} for the manifest`);
}

/** A request that got no HTTP answer, worded as registryError words skopeo's failures. */
function transportError(error: unknown, what: string, insecure: boolean): RegistryPullError {
  const failure = error as NodeJS.ErrnoException;
  if (failure.name === 'AbortError') {
    return new RegistryPullError(499, `pull of ${what} cancelled: the client went away`);
  }
  const words = `${failure.code ? `${failure.code}: ` : ''}${failure.message}`;
  const cause = (status: 502 | 504, text: string) =>
    new RegistryPullError(status, `pulling ${what}: ${text} (${words})`);
  if (failure.name === 'TimeoutError') return cause(504, 'the registry did not answer in time');
  if (!insecure && /wrong version number|packet length too long|http request/i.test(failure.message)) {
    return cause(502, 'the registry speaks plain HTTP; list it with --insecure-registry HOST:PORT');
  }
  if (
    /CERT|SIGNATURE|SELF_SIGNED|ERR_TLS|ERR_SSL/.test(failure.code ?? '') ||
    /certificate|x509|ssl|tls/i.test(failure.message)
  ) {
    return cause(502, 'TLS failure talking to the registry');
  }
  if (
    ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET'].includes(
      failure.code ?? '',
    )
  ) {
    return cause(502, 'the registry is unreachable');
  }
  return cause(502, 'the manifest request failed');
}
