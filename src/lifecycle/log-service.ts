import {
  LogAssembler,
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
}

/**
 * Serves a container's output from conmon's k8s-file log: the existing lines (optionally only the last `tail`),
 * then, with `follow`, every new line until the container stops (or is deleted) or the caller goes away.
 */
export class LogService {
  constructor(private readonly containers: ContainerService) {}

  async stream(
    id: string,
    options: LogOptions,
    emit: (entry: LogEntry) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const source = this.containers.logSource(id);
    const streams = new Set<LogStream>(options.stream === 'all' ? ['stdout', 'stderr'] : [options.stream]);
    const assembler = new LogAssembler({ streams, since: options.since, until: options.until });
    try {
      let offset = 0;
      const backlog: LogEntry[] = [];
      offset = await readLogLines(source.path, offset, (line) => {
        const entry = assembler.push(line);
        if (!entry) return;
        backlog.push(entry);
        // Keep memory bounded on huge logs when only the last lines are wanted.
        if (options.tail !== undefined && backlog.length > options.tail + 1024) backlog.splice(0, 1024);
      });
      const following = options.follow && source.running && !signal.aborted;
      // Without follow, a line still being written is shown as it stands (docker logs does the same).
      if (!following) backlog.push(...assembler.flush());
      const shown =
        options.tail === undefined ? backlog : options.tail === 0 ? [] : backlog.slice(-options.tail);
      for (const entry of shown) emit(entry);
      if (!following) return;

      // Reads are serialized: each picks up where the previous one stopped.
      let reading = Promise.resolve();
      const readMore = () => {
        reading = reading.then(async () => {
          offset = await readLogLines(source.path, offset, (line) => {
            const entry = assembler.push(line);
            if (entry) emit(entry);
          });
        });
        return reading;
      };
      const watcher = watchLog(source.path, () => void readMore());
      try {
        await readMore();
        const aborted = new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        await Promise.race([source.stopped, aborted]);
        // conmon drains the container's pipes before it records the exit; read what it wrote last.
        await readMore();
        for (const entry of assembler.flush()) emit(entry);
      } finally {
        watcher.stop();
      }
    } finally {
      source.cancel();
    }
  }
}
