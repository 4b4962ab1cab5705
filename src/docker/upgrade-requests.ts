import { IncomingMessage, ServerResponse, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** Largest body an upgrade request may carry (exec start bodies are a few dozen bytes). */
const MAX_UPGRADE_BODY = 64 * 1024;

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
      const rest = all.subarray(length);
      if (rest.length > 0) socket.unshift(rest);
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
