import { connect } from 'node:net';

/**
 * HTTP/1.1 written byte for byte to a unix socket: no client library in between to normalize `..`, decode
 * `%2e`, refuse a NUL or fix a header, so hostile requests reach runcd exactly as an attacker would send them.
 */

export interface RawRequest {
  method?: string;
  /** The request target exactly as sent (a Buffer for bytes that are not ASCII). */
  path: string | Buffer;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Replaces the whole request (for protocol-level junk). */
  raw?: Buffer;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  text: string;
  /** The parsed problem document, when the answer is one. */
  problem: { code?: string; status?: number; detail?: string } | undefined;
}

export function rawRequest(socketPath: string, request: RawRequest): Promise<RawResponse> {
  const body = request.body === undefined ? undefined : Buffer.from(request.body);
  const headers: Record<string, string> = { host: 'localhost', connection: 'close', ...request.headers };
  if (body !== undefined && !Object.keys(headers).some((name) => name.toLowerCase() === 'content-length')) {
    headers['content-length'] = String(body.length);
  }
  const head = Buffer.concat([
    Buffer.from(`${request.method ?? 'GET'} `),
    Buffer.from(request.path),
    Buffer.from(' HTTP/1.1\r\n'),
    Buffer.from(
      Object.entries(headers)
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join(''),
    ),
    Buffer.from('\r\n'),
  ]);
  const bytes = request.raw ?? Buffer.concat([head, body ?? Buffer.alloc(0)]);
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A server that answers before reading a whole (oversize) body closes on us mid-write: EPIPE or a reset
    // is expected then, and the answer it sent is what counts.
    let failure: Error | undefined;
    socket.on('error', (error) => (failure = error));
    socket.on('close', () => {
      const response = Buffer.concat(chunks).toString('utf8');
      const split = response.indexOf('\r\n\r\n');
      if (split === -1) {
        return reject(failure ?? new Error(`no HTTP response: ${JSON.stringify(response.slice(0, 200))}`));
      }
      const [statusLine, ...headerLines] = response.slice(0, split).split('\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1]);
      const parsedHeaders: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(':');
        parsedHeaders[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      let text = response.slice(split + 4);
      if (parsedHeaders['transfer-encoding'] === 'chunked') text = dechunk(text);
      let problem: RawResponse['problem'];
      if ((parsedHeaders['content-type'] ?? '').startsWith('application/problem+json')) {
        problem = JSON.parse(text) as RawResponse['problem'];
      }
      resolve({ status, headers: parsedHeaders, text, problem });
    });
    // Not end(): a half-closed connection makes Node's server drop a request still being handled. Every
    // request says `connection: close`, so the server closes once it has answered.
    socket.write(bytes);
    socket.setTimeout(10_000, () => socket.end());
  });
}

function dechunk(text: string): string {
  let out = '';
  let rest = text;
  for (;;) {
    const lineEnd = rest.indexOf('\r\n');
    const size = parseInt(rest.slice(0, lineEnd), 16);
    if (!size) return out;
    out += rest.slice(lineEnd + 2, lineEnd + 2 + size);
    rest = rest.slice(lineEnd + 2 + size + 2);
  }
}
