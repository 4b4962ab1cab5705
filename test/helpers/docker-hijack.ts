import { connect, type Socket } from 'node:net';

// Requests on runcd's Docker socket written by hand, as the docker CLI sends them: a plain one, and the hijacked
// `exec start` whose socket the test then drives (or abandons) itself.

/** A plain request on the Docker socket: the status and the body text. */
export function dockerRequest(
  socketPath: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? '' : JSON.stringify(body);
    const socket = connect(socketPath);
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.on('error', reject);
    socket.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
      let rest = text.slice(text.indexOf('\r\n\r\n') + 4);
      if (/transfer-encoding: chunked/i.test(text.slice(0, text.indexOf('\r\n\r\n')))) {
        rest = rest.replace(/^[0-9a-f]+\r\n/, '').replace(/\r\n0\r\n\r\n$/, '');
      }
      resolve({ status, text: rest });
    });
    socket.write(
      [
        `${method} ${path} HTTP/1.1`,
        'Host: localhost',
        'Connection: close',
        'Content-Type: application/json',
        `Content-Length: ${Buffer.byteLength(payload)}`,
        '',
        payload,
      ].join('\r\n'),
    );
  });
}

/** A raw hijacked exec start, as the docker CLI opens it: the socket after `101 UPGRADED` and its head. */
export function hijackedStart(
  socketPath: string,
  execId: string,
  body: Record<string, unknown>,
): Promise<{ socket: Socket; head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const socket = connect(socketPath);
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      socket.pause();
      resolve({ socket, head: buffered.subarray(0, end).toString(), rest: buffered.subarray(end + 4) });
    };
    socket.on('data', onData);
    socket.on('error', reject);
    socket.write(
      `POST /v1.50/exec/${execId}/start HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`,
    );
  });
}
