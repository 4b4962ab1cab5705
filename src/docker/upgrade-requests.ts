import { IncomingMessage, ServerResponse, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** Largest body an upgrade request may carry (exec start bodies are a few dozen bytes). */
const MAX_UPGRADE_BODY = 64 * 1024;
/** Client bytes held past the body (a hijacked stream's stdin sent early) before the socket stops being read. */
const MAX_HELD_INPUT = 256 * 1024;

/** What the client sent after its request's body, until the route took the connection over. */
export interface UpgradeInput {
  early: Buffer[];
  /** The client half-closed already (e.g. `echo x | docker exec -i` with a short input). */
  ended: boolean;
}

const heldInput = new WeakMap<object, { input: UpgradeInput; release: () => void }>();

/**
 * Takes over what an upgraded client sends from now on (a hijacked stream's stdin): the bytes held since the
 * request was dispatched, and whether it has half-closed already. The socket is left paused: the caller adds its
 * own 'data' and 'end' listeners and resumes it. Undefined for a request that did not come as an upgrade (its
 * socket still belongs to the HTTP parser, so nothing after the body is input).
 */
export function takeUpgradeInput(socket: object): UpgradeInput | undefined {
  const held = heldInput.get(socket);
  if (!held) return undefined;
  heldInput.delete(socket);
  held.release();
  return held.input;
}

/**
 * From the dispatch on, a client may already type (the docker CLI sends stdin as soon as it sent the start
 * request): its bytes are held, not dropped, while the route is routed, authenticated and started. The replayed
 * request has its body already, so nothing else reads the socket. Bounded: past MAX_HELD_INPUT the socket is
 * paused and the kernel holds the rest (the client's writes then block, as with a process that reads slowly).
 */
function holdInput(socket: Duplex, first: Buffer): void {
  // A client that half-closed right after its request may have had its end read (and emitted) already.
  const input: UpgradeInput = {
    early: first.length > 0 ? [first] : [],
    ended: (socket as Socket).readableEnded === true,
  };
  let bytes = first.length;
  const onData = (chunk: Buffer) => {
    input.early.push(chunk);
    bytes += chunk.length;
    if (bytes > MAX_HELD_INPUT) socket.pause();
  };
  const onEnd = () => (input.ended = true);
  socket.on('data', onData);
  socket.once('end', onEnd);
  if (bytes > MAX_HELD_INPUT) socket.pause();
  heldInput.set(socket, {
    input,
    release: () => {
      socket.pause();
      socket.off('data', onData);
      socket.off('end', onEnd);
    },
  });
}

/**
 * Docker clients ask for `Connection: Upgrade, Upgrade: tcp` on exec start and attach. Node hands such requests
 * to the server's 'upgrade' event, bypassing the normal request path (and with it fastify's routing, auth and
 * audit hooks). This feeds them back as ordinary requests: a fresh IncomingMessage (the parser has already let go
 * of the original, whose stream never ends) carries the same head and the body bytes, and a ServerResponse is bound to the socket so the route can answer normally
 * (errors as JSON) or hijack the connection and write `101 UPGRADED` itself.
 */
export function routeUpgradeRequestsAsRequests(server: Server): void {
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node's HTTP server takes its own 'error' listener off a socket it hands over for an upgrade: from here on an
    // error nobody listens for (a client resetting while its body is read: ECONNRESET) would end the daemon.
    // The route's PeerStream reports the close to the work behind the stream; this only keeps the error handled.
    socket.on('error', () => socket.destroy());
    const length = Number(request.headers['content-length'] ?? 0);
    if (!Number.isInteger(length) || length < 0 || length > MAX_UPGRADE_BODY) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const chunks: Buffer[] = [head];
    let received = head.length;
    const dispatch = () => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      const all = Buffer.concat(chunks);
      const body = all.subarray(0, length);
      holdInput(socket, all.subarray(length));
      const replay = new IncomingMessage(socket as Socket);
      Object.assign(replay, {
        method: request.method,
        url: request.url,
        headers: request.headers,
        rawHeaders: request.rawHeaders,
        httpVersion: request.httpVersion,
        httpVersionMajor: request.httpVersionMajor,
        httpVersionMinor: request.httpVersionMinor,
        complete: true,
      });
      if (body.length > 0) replay.push(body);
      replay.push(null);
      const response = new ServerResponse(replay);
      response.assignSocket(socket as Socket);
      response.shouldKeepAlive = false;
      server.emit('request', replay, response);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received >= length) dispatch();
    };
    // A client that leaves before its body is complete has asked for nothing: without this its half-closed
    // socket would stay open forever, since nobody reads or writes it any more.
    const onEnd = () => socket.destroy();
    if (received >= length) dispatch();
    else {
      socket.on('data', onData);
      socket.once('end', onEnd);
    }
  });
}
