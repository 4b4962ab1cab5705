import t from 'tap';
import { EventBus } from '../../src/lifecycle/event-bus.js';
import type { ContainerEvent } from '../../src/schemas/events.js';
import { openDatabase } from '../../src/store/database.js';
import { EventRepository } from '../../src/store/event-repository.js';

/**
 * A reader that is behind is fed from the event store, not from a queue: whatever it does, it gets every event
 * once, in order, and the bus holds nothing for it meanwhile.
 */

function busOnMemory(): EventBus {
  return new EventBus(new EventRepository(openDatabase(':memory:')));
}

/** A sink that takes `burst` events, then is behind until the test lets it drain. */
function slowSink(burst: number) {
  const received: number[] = [];
  let taken = 0;
  let release: (() => void) | undefined;
  return {
    received,
    sink: {
      write: (event: ContainerEvent) => {
        received.push(event.seq);
        return ++taken % burst !== 0;
      },
      drained: () => new Promise<void>((resolve) => (release = resolve)),
    },
    drain: () => release?.(),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

t.test('a slow live reader gets every event once, in order, however far behind it falls', async (t) => {
  const bus = busOnMemory();
  const before = bus.publish('create', 'earlier');
  const { received, sink, drain } = slowSink(10);
  const abort = new AbortController();
  const done = bus.stream({}, sink, abort.signal);
  const published: number[] = [];
  for (let round = 0; round < 50; round++) {
    for (let each = 0; each < 37; each++) published.push(bus.publish('exec', `c${each}`).seq);
    drain();
    await tick();
  }
  while (received.length < published.length) {
    drain();
    await tick();
  }
  abort.abort();
  drain();
  await done;
  t.same(received, published, 'every live event, once, in order; none from before the stream began');
  t.notOk(received.includes(before.seq));
});

t.test('since replays the store, then goes live without a gap or a duplicate', async (t) => {
  const bus = busOnMemory();
  const history = Array.from({ length: 600 }, (_, index) => bus.publish('start', `h${index}`).seq);
  const { received, sink, drain } = slowSink(100);
  const abort = new AbortController();
  const done = bus.stream({ since: '1970-01-01T00:00:00.000Z' }, sink, abort.signal);
  const live: number[] = [];
  while (received.length < history.length + 200) {
    if (live.length < 200) live.push(bus.publish('die', 'live').seq);
    drain();
    await tick();
  }
  abort.abort();
  drain();
  await done;
  t.same(received, [...history, ...live]);
});

t.test('until ends the stream once everything up to it was written', async (t) => {
  const bus = busOnMemory();
  const seqs = Array.from({ length: 300 }, () => bus.publish('kill', 'c').seq);
  const until = new Date().toISOString();
  const { received, sink, drain } = slowSink(50);
  const done = bus.stream({ since: '1970-01-01T00:00:00.000Z', until }, sink, new AbortController().signal);
  let finished = false;
  void done.then(() => (finished = true));
  while (!finished) {
    drain();
    await tick();
  }
  t.same(received, seqs);
});
