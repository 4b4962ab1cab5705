import type { Readable } from 'node:stream';
import type { FastifyReply } from 'fastify';

/**
 * Aborts when the client goes away (or the response ends), or when the server starts a graceful shutdown, so
 * long-lived streams stop their work and end their response instead of holding the shutdown open.
 */
export function abortOnClose(reply: FastifyReply): AbortController {
  const controller = new AbortController();
  const abort = () => controller.abort();
  reply.raw.once('close', abort);
  const closing = reply.server.closing;
  if (closing.aborted) abort();
  else closing.addEventListener('abort', abort, { once: true });
  reply.raw.once('close', () => closing.removeEventListener('abort', abort));
  return controller;
}

export function wantsNdjson(accept: string | undefined): boolean {
  return /application\/(x-)?ndjson/.test(accept ?? '');
}

export function wantsEventStream(accept: string | undefined): boolean {
  return /text\/event-stream/.test(accept ?? '');
}

/**
 * fastify pipes a stream as-is, bypassing the response serializer; the route's 200 schema documents what each
 * streamed line looks like. This cast is where the two meet. The headers go out as soon as piping starts, not with
 * the first line: a client then knows at once that its follow or subscription is in place (and with what status),
 * even when nothing happens for a while.
 */
export function asStreamedBody<T>(reply: FastifyReply, stream: Readable): T {
  reply.raw.once('pipe', () => {
    if (!reply.raw.headersSent) reply.raw.flushHeaders();
  });
  return stream as unknown as T;
}
