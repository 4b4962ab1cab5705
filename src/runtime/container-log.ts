import { watch } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * Reads conmon's k8s-file log: one record per line, `<RFC3339Nano time> <stdout|stderr> <P|F> <content>`. `P`
 * marks a partial line (conmon splits long writes and lines without a newline); the following records of the
 * same stream up to an `F` belong to the same line.
 */

export type LogStream = 'stdout' | 'stderr';

export interface LogEntry {
  time: string;
  stream: LogStream;
  line: string;
}

export interface LogFilter {
  streams: ReadonlySet<LogStream>;
  since?: string | undefined;
  until?: string | undefined;
}

interface LogRecord {
  time: string;
  stream: LogStream;
  partial: boolean;
  content: string;
}

export function parseLogRecord(text: string): LogRecord | undefined {
  const match = /^(\S+) (stdout|stderr) ([PF]) ?(.*)$/s.exec(text);
  if (!match) return undefined;
  return { time: match[1]!, stream: match[2] as LogStream, partial: match[3] === 'P', content: match[4]! };
}

/** Joins partial records into whole lines, per stream, and applies the filter. */
export class LogAssembler {
  private readonly pending = new Map<LogStream, { time: string; content: string }>();

  constructor(private readonly filter: LogFilter) {}

  push(text: string): LogEntry | undefined {
    const record = parseLogRecord(text);
    if (!record) return undefined;
    const pending = this.pending.get(record.stream);
    if (record.partial) {
      this.pending.set(record.stream, {
        time: pending?.time ?? record.time,
        content: (pending?.content ?? '') + record.content,
      });
      return undefined;
    }
    this.pending.delete(record.stream);
    const entry: LogEntry = {
      time: pending?.time ?? record.time,
      stream: record.stream,
      line: (pending?.content ?? '') + record.content,
    };
    return this.accepts(entry) ? entry : undefined;
  }

  /** A partial line still open when the container stopped is a line too. */
  flush(): LogEntry[] {
    const entries = [...this.pending].map(([stream, { time, content }]) => ({ time, stream, line: content }));
    this.pending.clear();
    return entries.filter((entry) => this.accepts(entry));
  }

  private accepts(entry: LogEntry): boolean {
    if (!this.filter.streams.has(entry.stream)) return false;
    const time = new Date(entry.time).toISOString();
    if (this.filter.since && time < this.filter.since) return false;
    if (this.filter.until && time > this.filter.until) return false;
    return true;
  }
}

const CHUNK = 64 * 1024;

/**
 * Reads complete lines from `offset` to the end of the file and returns the offset after the last complete line,
 * so a follower can resume there without splitting a record conmon is still writing.
 */
export async function readLogLines(
  path: string,
  offset: number,
  onLine: (line: string) => void,
): Promise<number> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch {
    return offset;
  }
  try {
    const buffer = Buffer.alloc(CHUNK);
    let carry = Buffer.alloc(0);
    let position = offset;
    let consumed = offset;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, CHUNK, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      let data = Buffer.concat([carry, buffer.subarray(0, bytesRead)]);
      let newline;
      while ((newline = data.indexOf(10)) !== -1) {
        onLine(data.subarray(0, newline).toString('utf8'));
        consumed += newline + 1;
        data = data.subarray(newline + 1);
      }
      carry = Buffer.from(data);
    }
    return consumed;
  } finally {
    await handle.close();
  }
}

/**
 * Calls `onChange` whenever the log file changes (inotify), until `stop()`. The file may not exist yet when a
 * container has written nothing, so its directory is watched.
 */
export function watchLog(path: string, onChange: () => void): { stop: () => void } {
  const directory = path.slice(0, path.lastIndexOf('/'));
  const name = path.slice(path.lastIndexOf('/') + 1);
  let watcher;
  try {
    watcher = watch(directory, { persistent: true }, (_event, filename) => {
      if (!filename || filename.toString() === name) onChange();
    });
  } catch {
    return { stop: () => undefined };
  }
  watcher.on('error', () => undefined);
  return { stop: () => watcher.close() };
}
