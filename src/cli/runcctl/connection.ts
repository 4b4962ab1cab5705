import WebSocket from 'ws';
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import createClient, { type Client } from 'openapi-fetch';
import type { paths } from '../generated/runcd-api.js';
import { CliError } from './errors.js';

/**
 * The typed client runcctl talks through. Its types are generated from the committed openapi/openapi.json at
 * build time (`npm run api-types`), so a change to the contract that runcctl's calls no longer fit breaks
 * `npm run build`. Requests go out through node:http(s), which can dial a unix socket and present a client
 * certificate, behind the fetch interface the client expects (and start faster than a fetch library would).
 */

export type RuncdClient = Client<paths>;

export const DEFAULT_HOST = 'unix:///run/runcd/runcd.sock';

export interface ConnectionOptions {
  host: string;
  token: string | undefined;
  /** PEM files for https: the CA that signed the server's certificate, and a client certificate for mutual TLS. */
  caFile: string | undefined;
  certFile: string | undefined;
  keyFile: string | undefined;
}

export interface Connection {
  client: RuncdClient;
  /** What to name in "cannot connect" messages. */
  host: string;
  /**
   * POST with a streamed body (a process's stdin), answered while it may still be sending: the answer ends the
   * upload, as a pipeline's reader ending stops its writer. Resolves with the status and the parsed JSON.
   */
  upload: (path: string, body: Readable, contentType: string) => Promise<{ status: number; json: unknown }>;
  /** A WebSocket to `path` (an exec session), with the same socket, TLS material and token. */
  websocket: (path: string) => WebSocket;
}

export function connect(options: ConnectionOptions): Connection {
  const { baseUrl, transport } = endpoint(options);
  const client = createClient<paths>({
    baseUrl,
    headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
    fetch: (request) => send(request, transport),
  });
  const headers: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};
  return {
    client,
    host: options.host,
    upload: (path, body, contentType) =>
      upload(new URL(path, baseUrl), transport, { ...headers, 'content-type': contentType }, body),
    websocket: (path) =>
      transport.socketPath
        ? new WebSocket(`ws+unix://${transport.socketPath}:${path}`, { headers })
        : new WebSocket(new URL(path, baseUrl.replace(/^http/, 'ws')), { headers, ...transport.tls }),
  };
}

function upload(
  url: URL,
  transport: Transport,
  headers: Record<string, string>,
  body: Readable,
): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const outgoing = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      {
        method: 'POST',
        path: `${url.pathname}${url.search}`,
        headers,
        agent: false,
        ...(transport.socketPath
          ? { socketPath: transport.socketPath }
          : { host: url.hostname, port: url.port, ...transport.tls }),
      },
      (response) => {
        // The answer is in: whatever of the body is still unsent is no longer wanted.
        body.unpipe(outgoing);
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          outgoing.destroy();
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({
              status: response.statusCode ?? 0,
              json: text ? (JSON.parse(text) as unknown) : undefined,
            });
          } catch {
            reject(new Error(`runcd answered ${response.statusCode} with a body that is not JSON`));
          }
        });
      },
    );
    // A reset after the answer (runcd closed the connection on an unread rest) is no failure.
    outgoing.on('error', (error) => reject(error));
    // Headers go out now, not with the first chunk: a pipe that stays silent (a script's open stdin, as under
    // execFile) would otherwise hold the request unsent while the process could run and answer without it.
    outgoing.flushHeaders();
    body.pipe(outgoing);
  });
}

/** How to reach the daemon: a unix socket, or TCP with TLS material for https. */
type Transport = Pick<RequestOptions, 'socketPath'> & { tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer } };

/**
 * fetch over node:http(s). No timeouts: waits, log follows and event streams last as long as the user wants them
 * to (Ctrl-C ends them); no connection pooling, since a CLI run makes a handful of requests and then exits.
 */
async function send(request: Request, transport: Transport): Promise<Response> {
  const url = new URL(request.url);
  const body = request.body ? Buffer.from(await request.arrayBuffer()) : undefined;
  const options: RequestOptions = {
    method: request.method,
    path: `${url.pathname}${url.search}`,
    headers: Object.fromEntries(request.headers),
    agent: false,
    ...(transport.socketPath
      ? { socketPath: transport.socketPath }
      : { host: url.hostname, port: url.port, ...transport.tls }),
  };
  const response = await new Promise<IncomingMessage>((resolve, reject) => {
    const outgoing = (url.protocol === 'https:' ? httpsRequest : httpRequest)(options, resolve);
    outgoing.on('error', reject);
    outgoing.end(body);
  });
  const headers = new Headers();
  for (const [name, value] of Object.entries(response.headers)) {
    for (const each of [value ?? []].flat()) headers.append(name, each);
  }
  const status = response.statusCode ?? 0;
  const empty = status === 204 || status === 304 || request.method === 'HEAD';
  if (empty) response.resume();
  const stream = Readable.toWeb(response) as WebReadableStream<Uint8Array>;
  return new Response(empty ? null : (stream as unknown as ReadableStream<Uint8Array>), {
    status,
    statusText: response.statusMessage ?? '',
    headers,
  });
}

function endpoint(options: ConnectionOptions): { baseUrl: string; transport: Transport } {
  const host = options.host;
  if (host.startsWith('unix://')) {
    const socketPath = host.slice('unix://'.length);
    if (!socketPath.startsWith('/')) {
      throw new CliError(`--host ${host}: a unix socket is given as unix:///absolute/path`);
    }
    return { baseUrl: 'http://localhost', transport: { socketPath } };
  }
  let url: URL;
  try {
    url = new URL(host);
  } catch {
    throw new CliError(`--host ${host}: expected unix:///path/to/runcd.sock or https://host:port`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new CliError(`--host ${host}: expected unix:///path/to/runcd.sock or https://host:port`);
  }
  if (url.pathname !== '/' || url.search || url.hash) {
    throw new CliError(`--host ${host}: give only scheme, host and port`);
  }
  const tls =
    url.protocol === 'https:'
      ? {
          ...(options.caFile ? { ca: readPem(options.caFile, '--cacert') } : {}),
          ...(options.certFile ? { cert: readPem(options.certFile, '--cert') } : {}),
          ...(options.keyFile ? { key: readPem(options.keyFile, '--key') } : {}),
        }
      : undefined;
  return { baseUrl: url.origin, transport: tls ? { tls } : {} };
}

function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new CliError(`${flag} ${path}: ${(error as Error).message}`);
  }
}
