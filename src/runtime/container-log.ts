import { watch } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';

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
  private readonly accepts: (line: { time: string; stream: LogStream }) => boolean;

  constructor(filter: LogFilter) {
    this.accepts = acceptor(filter);
  }

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
}

function acceptor(filter: LogFilter): (line: { time: string; stream: LogStream }) => boolean {
  return (line) => {
    if (!filter.streams.has(line.stream)) return false;
    const time = new Date(line.time).toISOString();
    if (filter.since && time < filter.since) return false;
    if (filter.until && time > filter.until) return false;
    return true;
  };
}

const CHUNK = 64 * 1024;

/**
 * Reads complete lines from `offset` (up to `end`, or to the end of the file) and returns the offset after the
 * last complete line, so a follower can resume there without splitting a record conmon is still writing.
 * `onLine` gets each line with its offset; when it returns a promise (its reader asked to pause), reading waits
 * for it, so a slow reader holds back the file, not runcd's memory. Stops early once `signal` aborts.
 */
export async function readLogLines(
  path: string,
  offset: number,
  onLine: (line: string, offset: number) => void | Promise<void>,
  options: { end?: number | undefined; signal?: AbortSignal | undefined } = {},
): Promise<number> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch {
    return offset;
  }
  try {
    const limit = options.end ?? Infinity;
    const buffer = Buffer.allocUnsafe(CHUNK);
    let carry = Buffer.alloc(0);
    let position = offset;
    let consumed = offset;
    while (position < limit && !options.signal?.aborted) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(CHUNK, limit - position), position);
      if (bytesRead === 0) break;
      position += bytesRead;
      const data = carry.length > 0 ? Buffer.concat([carry, buffer.subarray(0, bytesRead)]) : buffer;
      const length = carry.length + bytesRead;
      let start = 0;
      let newline;
      while ((newline = data.indexOf(10, start)) !== -1 && newline < length) {
        const paused = onLine(data.toString('utf8', start, newline), consumed);
        consumed += newline + 1 - start;
        start = newline + 1;
        if (paused) await paused;
        if (options.signal?.aborted) return consumed;
      }
      // A copy: `data` may be a view of `buffer`, which the next read overwrites.
      carry = Buffer.from(data.subarray(start, length));
    }
    return consumed;
  } finally {
    await handle.close();
  }
}

/** The log's size now (0 while the container has written nothing). */
export async function logSize(path: string): Promise<number> {
  return stat(path).then(
    (stats) => stats.size,
    () => 0,
  );
}

/**
 * Where a forward read must start so that the last `tail` lines come out whole, found by reading the file
 * backwards from its end in chunks: `docker logs --tail 5` of a 200 MB log reads a few kilobytes, not the file.
 * Only the records' heads (time, stream, P/F) are looked at, and only the offsets of the lines to show are kept.
 *
 * A line ends with an F record; its first record is the one after the previous F of the same stream, so a line is
 * known whole (and its time, the time of its first record, known) once the scan has passed that previous F. The
 * scan stops at an F record once the `tail` latest whole lines that pass the filter all end after every line still
 * open, so reading forward from just after that record yields them whole; the lines it yields that end before
 * `firstShown` (the end of the earliest of them) are not shown, which also drops any line the start cut in two.
 * `end` is the size of the file up to its last complete record, where a follower resumes. With `following`, a
 * line still being written (trailing P records) is not part of the tail: it is shown when it is finished.
 */
export async function findTailStart(
  path: string,
  tail: number,
  filter: LogFilter,
  following: boolean,
): Promise<{ start: number; firstShown: number; end: number; unfinishedShown: number }> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch {
    return { start: 0, firstShown: 0, end: 0, unfinishedShown: 0 };
  }
  try {
    const { size } = await handle.stat();
    // Lines are ordered by where they end. Unfinished ones (trailing P records) come after every finished one,
    // among themselves in the order of their first record: the order in which the assembler flushes them.
    const shown = new MinHeap();
    const open = new Map<LogStream, { end: number; first: number; time: string }>();
    const accepts = acceptor(filter);
    const threshold = () => (tail === 0 ? Infinity : shown.size < tail ? 0 : shown.min());
    const finish = (line: { end: number; first: number; time: string }, stream: LogStream) => {
      const unfinished = line.end === Infinity;
      if (following && unfinished) return;
      if (!accepts({ time: line.time, stream })) return;
      shown.push(unfinished ? size + line.first : line.end);
      if (shown.size > tail) shown.pop();
    };
    const result = (start: number, end: number) => ({
      start,
      firstShown: threshold(),
      end,
      unfinishedShown: shown.countAtLeast(size),
    });
    let start: number | undefined;
    const end = await readRecordsBackwards(handle, size, (head, offset, length) => {
      if (!head || !filter.streams.has(head.stream)) return true;
      const line = open.get(head.stream);
      if (head.partial) {
        if (line) Object.assign(line, { first: offset, time: head.time });
        else open.set(head.stream, { end: Infinity, first: offset, time: head.time });
        return true;
      }
      if (line) finish(line, head.stream);
      open.set(head.stream, { end: offset, first: offset, time: head.time });
      if (shown.size < tail) return true;
      // Unfinished lines always count as open, so the forward read assembles them whole.
      const first = threshold();
      for (const each of open.values()) if (each.end >= first || each.end === Infinity) return true;
      start = offset + length + 1;
      return false;
    });
    if (start !== undefined) return result(start, end);
    // The start of the file: every line still open began there.
    for (const [stream, line] of open) finish(line, stream);
    return result(0, end);
  } finally {
    await handle.close();
  }
}

interface RecordHead {
  time: string;
  stream: LogStream;
  partial: boolean;
}

/** The head of a k8s-file record (`<time> <stream> <P|F> `), without decoding its content. */
function parseRecordHead(data: Buffer, start: number, stop: number): RecordHead | undefined {
  const text = data.toString('latin1', start, Math.min(stop, start + 64));
  const match = /^(\S+) (stdout|stderr) ([PF])/.exec(text);
  if (!match) return undefined;
  return { time: match[1]!, stream: match[2] as LogStream, partial: match[3] === 'P' };
}

/**
 * Calls `onRecord` for each complete record, last first, with its offset and length (without the newline), until
 * it returns false; answers the offset after the last complete record. Memory: one chunk plus one record.
 */
async function readRecordsBackwards(
  handle: FileHandle,
  size: number,
  onRecord: (head: RecordHead | undefined, offset: number, length: number) => boolean,
): Promise<number> {
  let position = size;
  let carry = Buffer.alloc(0);
  let end: number | undefined;
  while (position > 0) {
    const length = Math.min(CHUNK, position);
    position -= length;
    const chunk = Buffer.allocUnsafe(length);
    const { bytesRead } = await handle.read(chunk, 0, length, position);
    const data = carry.length > 0 ? Buffer.concat([chunk.subarray(0, bytesRead), carry]) : chunk;
    let stop = carry.length + bytesRead;
    if (end === undefined) {
      // Bytes after the last newline are a record conmon is still writing.
      const last = data.lastIndexOf(10, stop - 1);
      if (last === -1) continue;
      stop = last + 1;
      end = position + stop;
    }
    // data[0, stop) ends with a newline; every record in it but the first starts after another newline.
    for (;;) {
      const previous = stop >= 2 ? data.lastIndexOf(10, stop - 2) : -1;
      if (previous === -1) break;
      const start = previous + 1;
      if (!onRecord(parseRecordHead(data, start, stop - 1), position + start, stop - 1 - start)) return end;
      stop = start;
    }
    carry = Buffer.from(data.subarray(0, stop));
  }
  if (carry.length > 0) onRecord(parseRecordHead(carry, 0, carry.length - 1), 0, carry.length - 1);
  return end ?? 0;
}

/** The `tail` largest line ends seen so far: a binary min-heap, so the smallest is dropped in O(log n). */
class MinHeap {
  private readonly items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  min(): number {
    return this.items[0]!;
  }

  countAtLeast(value: number): number {
    return this.items.filter((item) => item >= value).length;
  }

  push(value: number): void {
    const items = this.items;
    items.push(value);
    let index = items.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (items[parent]! <= value) break;
      items[index] = items[parent]!;
      index = parent;
    }
    items[index] = value;
  }

  pop(): void {
    const items = this.items;
    const last = items.pop()!;
    if (items.length === 0) return;
    let index = 0;
    for (;;) {
      const left = index * 2 + 1;
      if (left >= items.length) break;
      const child = left + 1 < items.length && items[left + 1]! < items[left]! ? left + 1 : left;
      if (items[child]! >= last) break;
      items[index] = items[child]!;
      index = child;
    }
    items[index] = last;
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
