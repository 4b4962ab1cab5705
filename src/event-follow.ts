import { PassThrough } from 'node:stream';
import type { EventBus } from './lifecycle/event-bus.js';
import { PeerStream } from './peer-stream.js';
import type { ContainerEvent } from './schemas/events.js';

/**
 * Both event APIs (native NDJSON/SSE and Docker's) follow the bus the same way: stored events from `since`,
 * then live ones, until `until`, the client leaving or `stop`; each event rendered by the surface (undefined
 * skips it), written with backpressure, so a slow reader catches up from the store instead of growing memory.
 */
export function followEvents(
  events: EventBus,
  window: { since?: string | undefined; until?: string | undefined },
  render: (event: ContainerEvent) => string | undefined,
  stop: AbortSignal,
  onEarlyEnd: (error: unknown) => void = () => undefined,
): PassThrough {
  const body = new PassThrough();
  const peer = new PeerStream(body);
  void events
    .stream(
      window,
      {
        write: (event) => {
          const text = render(event);
          return text === undefined ? true : peer.write(text);
        },
        drained: () => peer.drained(),
      },
      peer.orWhen(stop),
    )
    .catch(onEarlyEnd)
    .finally(() => peer.end());
  return body;
}
