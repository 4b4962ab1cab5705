import type { Readable } from 'node:stream';
import type { ServerResponse } from 'node:http';

/** Aborts when the client goes away (or the response ends), so long-lived streams stop their work. */
export function abortOnClose(response: ServerResponse): AbortController {
  const controller = new AbortController();
  response.once('close', () => controller.abort());
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
 * streamed line looks like. This cast is where the two meet.
 */
export function asStreamedBody<T>(stream: Readable): T {
  return stream as unknown as T;
}
