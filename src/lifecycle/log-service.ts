import {
  findTailStart,
  LogAssembler,
  logSize,
  readLogLines,
  watchLog,
  type LogEntry,
  type LogStream,
} from '../runtime/container-log.js';
import type { ContainerService } from './container-service.js';

export interface LogOptions {
  follow: boolean;
  tail?: number | undefined;
  since?: string | undefined;
  until?: string | undefined;
  stream: 'stdout' | 'stderr' | 'all';
  /** Without tail: start at this byte of the log (a length logSize gave earlier) instead of its beginning. */
  fromOffset?: number | undefined;
}

/** Where the lines go: write() answers false when its reader is behind; reading then waits for drained(). */
export interface LogSink {
  write(entry: LogEntry): boolean;
  drained(): Promise<void>;
}

/**
 * Serves a container's output from conmon's k8s-file log: the existing lines (optionally only the last `tail`),
 * then, with `follow`, every new line until the container stops (or is deleted) or the caller goes away.
 * Memory does not depend on the log: the file is read in chunks as the sink takes them (a tail from the end of
 * the file), so a 200 MB log or a reader that never reads costs one chunk and the sink's buffer.
 */
export class LogService {
  constructor(private readonly containers: ContainerService) {}

  /**
   * The output of the next run of a stopped container: waits (until `signal`) for it to be started again, then
   * streams what it writes from there, even if it wrote all of it and exited before the stream began. conmon
   * appends to the same log across runs, so the log's length now is where the next run's output begins. This is
   * Docker's attach to an exited container (`docker start -a`, compose's `up` of an exited service).
   */
  async streamNextRun(
    id: string,
    options: Omit<LogOptions, 'tail' | 'fromOffset'>,
    sink: LogSink,
    signal: AbortSignal,
  ): Promise<void> {
    let started!: () => void;
    const next = new Promise<void>((resolve) => (started = resolve));
    // Subscribed before the log is measured, so a start in between is not missed.
    const unsubscribe = this.containers.events.subscribe((event) => {
      if (event.id === id && (event.type === 'start' || event.type === 'restart' || event.type === 'delete'))
        started();
    });
    if (signal.aborted) started();
    else signal.addEventListener('abort', () => started(), { once: true });
    try {
      const source = this.containers.logSource(id);
      source.cancel();
      const offset = await logSize(source.path);
      if (this.containers.get(id).status === 'stopped') await next;
      if (signal.aborted || !this.containers.list().some((each) => each.id === id)) return;
      await this.stream(id, { ...options, fromOffset: offset }, sink, signal);
    } finally {
      unsubscribe();
    }
  }

  async stream(id: string, options: LogOptions, sink: LogSink, signal: AbortSignal): Promise<void> {
    const source = this.containers.logSource(id);
    const streams = new Set<LogStream>(options.stream === 'all' ? ['stdout', 'stderr'] : [options.stream]);
    const filter = { streams, since: options.since, until: options.until };
    const assembler = new LogAssembler(filter);
    const emit = (entry: LogEntry) => (sink.write(entry) ? undefined : sink.drained());
    try {
      const following = options.follow && source.running && !signal.aborted;
      if (options.tail === 0 && !following) return;
      // Without follow, the log as it stands when asked: a chatty container must not make the answer endless.
      const { start, firstShown, end, unfinishedShown } =
        options.tail === undefined
          ? {
              start: options.fromOffset ?? 0,
              firstShown: options.fromOffset ?? 0,
              end: following ? undefined : await logSize(source.path),
              unfinishedShown: Infinity,
            }
          : await findTailStart(source.path, options.tail, filter, following);
      let offset = await readLogLines(
        source.path,
        start,
        (line, at) => {
          const entry = assembler.push(line);
          return entry && at >= firstShown ? emit(entry) : undefined;
        },
        { end, signal },
      );
      if (!following || signal.aborted) {
        // Without follow, a line still being written is shown as it stands (docker logs does the same).
        if (signal.aborted || unfinishedShown === 0) return;
        for (const entry of assembler.flush().slice(-unfinishedShown)) await emit(entry);
        return;
      }

      // One read at a time, each from where the previous stopped. Changes that come during a read (a chatty
      // container, a paused reader) ask for one more read after it, never for a queue of them.
      let reading: Promise<void> | undefined;
      let again = false;
      const readMore = (): Promise<void> => {
        if (reading) {
          again = true;
          return reading;
        }
        reading = (async () => {
          do {
            again = false;
            offset = await readLogLines(
              source.path,
              offset,
              (line) => {
                const entry = assembler.push(line);
                return entry ? emit(entry) : undefined;
              },
              { signal },
            );
          } while (again && !signal.aborted);
        })().finally(() => (reading = undefined));
        return reading;
      };
      const watcher = watchLog(source.path, () => void readMore().catch(() => undefined));
      try {
        await readMore();
        const aborted = new Promise<void>((resolve) => {
          if (signal.aborted) resolve();
          else signal.addEventListener('abort', () => resolve(), { once: true });
        });
        await Promise.race([source.stopped, aborted]);
        if (signal.aborted) return;
        // conmon drains the container's pipes before it records the exit; read what it wrote last.
        await readMore();
        for (const entry of assembler.flush()) await emit(entry);
      } finally {
        watcher.stop();
      }
    } finally {
      source.cancel();
    }
  }
}
