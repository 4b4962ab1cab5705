/**
 * The framing between runcd and the compiled spawn helper (native/spawn-helper/spawn-helper.c), binary both ways so
 * that the C side parses nothing but lengths. Every frame is a 12-byte header of three little-endian uint32s (body
 * length, id, type) and the body.
 *
 * Requests (runcd to helper):
 * - run: u32 timeoutMs, u32 outputLimitBytes, u32 flags, str binary, [str cwd], [str fifoAsFd3], [bytes input],
 *   u32 argc, str x argc, u32 envc, str x envc ("NAME=value"); a str is a u32 length and its bytes.
 * - remove: str path. kill: no body (the id is the call's).
 * Answers (helper to runcd):
 * - hello (id 0): the protocol version, the helper's self-check.
 * - spawned: i32 pid. spawnError: the message (as Node words it: "spawn /x ENOENT").
 * - done: i32 exit code (-1: none), i32 signal number (0: none), u32 flags, u32 + stdout, u32 + stderr; for a
 *   removal, an empty body.
 */
import { constants } from 'node:os';
import type { HelperMessage, HelperRemoval, HelperRequest } from './spawn-helper.js';

export const NATIVE_HELPER_HELLO = 'runcd-spawn-helper/1';
const HEADER_BYTES = 12;
/** The helper refuses a larger request body; runcd's largest is a CNI config of a few KiB. */
export const MAX_REQUEST_BODY_BYTES = 64 * 1024 * 1024;

const REQUEST = { run: 1, remove: 2, kill: 3 } as const;
const ANSWER = { hello: 0, spawned: 1, done: 2, spawnError: 3 } as const;
const RUN_FLAGS = { ignoreStdout: 1, input: 2, fifoAsFd3: 4, endAtExit: 8, cwd: 16 } as const;
const DONE_FLAGS = { truncated: 1, timedOut: 2 } as const;

/** A number's first name wins (6 is SIGABRT, not SIGIOT), as in Node's own reports of a child's signal. */
const SIGNAL_NAMES = new Map<number, NodeJS.Signals>();
for (const [name, number] of Object.entries(constants.signals))
  if (!SIGNAL_NAMES.has(number)) SIGNAL_NAMES.set(number, name as NodeJS.Signals);

function frame(id: number, type: number, parts: Buffer[]): Buffer {
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32LE(length, 0);
  header.writeUInt32LE(id >>> 0, 4);
  header.writeUInt32LE(type, 8);
  return Buffer.concat([header, ...parts]);
}

function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value >>> 0);
  return buffer;
}

function str(value: string): Buffer[] {
  const bytes = Buffer.from(value, 'utf8');
  return [u32(bytes.length), bytes];
}

export function encodeRun(request: HelperRequest): Buffer {
  const flags =
    (request.ignoreStdout ? RUN_FLAGS.ignoreStdout : 0) |
    (request.input !== undefined ? RUN_FLAGS.input : 0) |
    (request.fifoAsFd3 !== undefined ? RUN_FLAGS.fifoAsFd3 : 0) |
    (request.endAtExit ? RUN_FLAGS.endAtExit : 0) |
    (request.cwd ? RUN_FLAGS.cwd : 0);
  const env = Object.entries(request.env).map(([name, value]) => `${name}=${value}`);
  return frame(request.id, REQUEST.run, [
    // Both bounded to what a uint32 holds: a deadline past 49 days is none at all for a runtime command.
    u32(Math.min(Math.max(0, Math.trunc(request.timeoutMs)), 0xffffffff)),
    u32(Math.min(Math.max(0, Math.trunc(request.outputLimitBytes)), 0xffffffff)),
    u32(flags),
    ...str(request.binary),
    ...(request.cwd ? str(request.cwd) : []),
    ...(request.fifoAsFd3 !== undefined ? str(request.fifoAsFd3) : []),
    ...(request.input !== undefined ? str(request.input) : []),
    // argv[0] is the binary as given, as Node's spawn passes it.
    u32(request.argv.length + 1),
    ...str(request.binary),
    ...request.argv.flatMap(str),
    u32(env.length),
    ...env.flatMap(str),
  ]);
}

export function encodeRemove(request: HelperRemoval): Buffer {
  return frame(request.id, REQUEST.remove, str(request.path));
}

export function encodeKill(id: number): Buffer {
  return frame(id, REQUEST.kill, []);
}

export type NativeAnswer = { type: 'hello'; version: string } | HelperMessage;

/** Cuts the helper's byte stream into answers; a partial frame waits for the rest. */
export class AnswerDecoder {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): NativeAnswer[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const answers: NativeAnswer[] = [];
    let offset = 0;
    while (this.pending.length - offset >= HEADER_BYTES) {
      const length = this.pending.readUInt32LE(offset);
      if (this.pending.length - offset - HEADER_BYTES < length) break;
      const id = this.pending.readUInt32LE(offset + 4);
      const type = this.pending.readUInt32LE(offset + 8);
      const body = this.pending.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + length);
      answers.push(decodeAnswer(id, type, body));
      offset += HEADER_BYTES + length;
    }
    this.pending = this.pending.subarray(offset);
    return answers;
  }
}

function decodeAnswer(id: number, type: number, body: Buffer): NativeAnswer {
  if (type === ANSWER.hello) return { type: 'hello', version: body.toString('utf8') };
  if (type === ANSWER.spawned) return { type: 'spawned', id, pid: body.readInt32LE(0) };
  if (type === ANSWER.spawnError) return { type: 'done', id, spawnError: body.toString('utf8') };
  if (type !== ANSWER.done) throw new Error(`the spawn helper sent an answer of unknown type ${type}`);
  if (body.length === 0) return { type: 'done', id };
  const exitCode = body.readInt32LE(0);
  const signal = body.readInt32LE(4);
  const flags = body.readUInt32LE(8);
  const stdoutLength = body.readUInt32LE(12);
  const stdout = body.subarray(16, 16 + stdoutLength);
  const stderrLength = body.readUInt32LE(16 + stdoutLength);
  const stderr = body.subarray(20 + stdoutLength, 20 + stdoutLength + stderrLength);
  return {
    type: 'done',
    id,
    exitCode: exitCode < 0 ? null : exitCode,
    signal: signal === 0 ? null : (SIGNAL_NAMES.get(signal) ?? null),
    stdout: stdout.toString('utf8'),
    stderr: stderr.toString('utf8'),
    truncated: (flags & DONE_FLAGS.truncated) !== 0,
    timedOut: (flags & DONE_FLAGS.timedOut) !== 0,
  };
}
