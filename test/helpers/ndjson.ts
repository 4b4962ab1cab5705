import { request as httpRequest, type ClientRequest } from 'node:http';

export interface NdjsonAnswer {
  status: number;
  contentType: string;
  /** The parsed lines of an NDJSON answer; empty for any other. */
  lines: Array<Record<string, unknown>>;
  /** The body of an answer that is not NDJSON (a problem+json). */
  body: Record<string, unknown> | undefined;
}

/** POST a JSON body over a unix socket and read the whole answer, NDJSON line by line. */
export function postForLines(
  socketPath: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<NdjsonAnswer> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      {
        socketPath,
        method: 'POST',
        path,
        headers: { 'content-type': 'application/json', ...headers },
        timeout: 120_000,
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('error', reject);
        response.on('end', () => {
          const contentType = String(response.headers['content-type'] ?? '');
          const ndjson = /ndjson|^application\/json$/.test(contentType) && response.statusCode === 200;
          resolve({
            status: response.statusCode ?? 0,
            contentType,
            lines: ndjson
              ? text
                  .split('\n')
                  .filter(Boolean)
                  .map((line) => JSON.parse(line) as Record<string, unknown>)
              : [],
            body: ndjson || text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>),
          });
        });
      },
    );
    request.on('error', reject);
    request.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** Starts a POST and resolves with its status and first chunk; the caller destroys the request to cancel. */
export function postAndReadFirst(
  socketPath: string,
  path: string,
  body: unknown,
): { request: ClientRequest; first: Promise<{ status: number; first: string }> } {
  const request = httpRequest({
    socketPath,
    method: 'POST',
    path,
    headers: { 'content-type': 'application/json' },
  });
  const first = new Promise<{ status: number; first: string }>((resolve, reject) => {
    request.on('response', (response) => {
      response.once('data', (chunk: Buffer) =>
        resolve({ status: response.statusCode ?? 0, first: chunk.toString() }),
      );
      response.on('error', () => undefined);
    });
    request.on('error', (error) => reject(error));
  });
  request.end(JSON.stringify(body));
  return { request, first };
}
