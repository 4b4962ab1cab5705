/*
 * Interactive exec over a WebSocket: `runc exec -t` (or a stdin that stays open) for remote clients. The process
 * is checked before the upgrade, so a bad request is a plain HTTP 4xx; the frames are described in the route's
 * OpenAPI description, which is their only specification.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { DEFAULT_DETACH_KEYS, DetachKeyScanner, parseDetachKeys } from '../src/detach-keys.js';
import { UpgradeRequiredError } from '../src/errors.js';
import type { ExecSessions, ExecSession } from '../src/lifecycle/exec-sessions.js';
import type { OciProcess } from '../src/runtime/oci.js';
import { ContainerIdParams, ProblemSchema } from '../src/schemas/common.js';
import { execBodyOf, ExecSessionQuery, SessionControl } from '../src/schemas/container.js';

export interface ExecSessionRouteOptions {
  sessions: ExecSessions;
}

/** Output held for a client that does not read, before its session is ended (memory stays bounded). */
export const MAX_UNREAD_OUTPUT_BYTES = 8 * 1024 * 1024;
const STREAM_BYTE = { stdout: 1, stderr: 2 } as const;

const FRAMES = `The process runs once the WebSocket is open. Frames:
- server → client, binary: output, the first byte the stream (1 stdout, 2 stderr; a terminal has only 1).
- server → client, text: \`{"type":"started","session":ID,"pid":PID}\` once the process runs, and
  \`{"type":"exit","exitCode":N}\` at its end, after all of its output; then the server closes (1000).
- server → client, text: \`{"type":"detached"}\` when the detach keys were typed (terminals only), then close 1000:
  the process runs on with nobody attached, its exit code in the \`exec\` event.
- client → server, binary: bytes for the process's stdin (a terminal's keystrokes: ^C is byte 3). With a
  terminal, the detach keys (\`detachKeys\`, default ${DEFAULT_DETACH_KEYS}) never reach the process.
- client → server, text: \`{"type":"resize","rows":R,"cols":C}\` (terminals only) or \`{"type":"eof"}\` (stdin ends).
A malformed text frame closes the connection with 1008. A client that leaves without detaching ends the process
(SIGHUP, then SIGKILL after 5 s); one that stops reading while more than 8 MiB of output waits is treated as gone.`;

const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((status) => [status, ProblemSchema]));

const execSessionRoutes: FastifyPluginAsyncZod<ExecSessionRouteOptions> = async (app, { sessions }) => {
  const prepared = new WeakMap<object, { process: OciProcess; detachKeys: Uint8Array | undefined }>();
  app.route({
    method: 'GET',
    url: '/containers/:id/exec/session',
    config: { access: 'admin' },
    schema: {
      operationId: 'execSession',
      tags: ['containers'],
      summary: 'An interactive process over a WebSocket (runc exec [-t]): stdin, output, resize, exit code',
      description: FRAMES,
      params: ContainerIdParams,
      querystring: ExecSessionQuery,
      response: {
        101: z.null().describe('Switching Protocols: the session runs over the WebSocket'),
        ...errors(400, 403, 404, 409, 426, 501, 503),
      },
    },
    preHandler: async (request) => {
      const { tty, rows, cols, detachKeys, ...rest } = request.query;
      const body = execBodyOf({ ...rest });
      const process = await sessions.prepare(request.params.id, {
        ...body,
        tty: tty ?? false,
        size: rows !== undefined && cols !== undefined ? { rows, cols } : undefined,
      });
      // Docker scans only a terminal's input: a pipe's bytes (a file sent as stdin) pass untouched.
      prepared.set(request, { process, detachKeys: tty ? parseDetachKeys(detachKeys ?? '') : undefined });
    },
    handler: async () => {
      throw new UpgradeRequiredError(
        'websocket_required',
        'this route is a WebSocket: connect with Upgrade: websocket (e.g. runcctl exec -t)',
      );
    },
    wsHandler: (socket: WebSocket, request) => {
      const { process, detachKeys } = prepared.get(request)!;
      // fastify's onResponse never runs for a hijacked reply: the session's audit record is written at its end.
      socket.once('close', () => app.auditTakenOver(request, 101));
      void runSession(socket, sessions, request.params.id, process, detachKeys);
    },
  });
};

async function runSession(
  socket: WebSocket,
  sessions: ExecSessions,
  containerId: string,
  process: OciProcess,
  detachKeys: Uint8Array | undefined,
): Promise<void> {
  let session: ExecSession | undefined;
  let gone = false;
  let detaching = false;
  const leave = (code: number, reason: string) => {
    if (gone) return;
    gone = true;
    session?.hangUp();
    socket.close(code, reason);
  };
  const detach = () => {
    if (gone) return;
    gone = true;
    session!.detach();
    socket.send(JSON.stringify({ type: 'detached' }));
    socket.close(1000, 'detached');
  };
  const scanner = detachKeys ? new DetachKeyScanner(detachKeys) : undefined;
  // Input that arrives before the process runs waits here: it is never given to a process that did not start.
  const early: Buffer[] = [];
  let earlyEof = false;
  socket.on('message', (data: Buffer, isBinary: boolean) => {
    if (gone || detaching) return;
    if (isBinary) {
      const input = scanner ? scanner.scan(data) : data;
      if (scanner?.detached) detaching = true;
      if (!session) {
        // The sequence typed before the process runs: the detach happens once it runs (after what came first).
        if (input.length > 0) early.push(input);
        return;
      }
      if (input.length > 0) void session.write(input);
      if (detaching) detach();
      return;
    }
    let control: SessionControl;
    try {
      const parsed = SessionControl.safeParse(JSON.parse(data.toString('utf8')));
      if (!parsed.success) throw new Error(parsed.error.issues[0]?.message ?? 'invalid control frame');
      control = parsed.data;
    } catch (error) {
      leave(1008, `malformed control frame: ${(error as Error).message}`.slice(0, 120));
      return;
    }
    if (control.type === 'eof') {
      if (session) session.endInput();
      else earlyEof = true;
    } else {
      try {
        session?.resize(control.rows, control.cols);
      } catch {
        // the terminal is gone with its process: the exit frame follows
      }
    }
  });
  socket.on('close', () => {
    if (!gone) {
      gone = true;
      // A client that typed the detach keys and closed at once (before its process ran) still detached.
      if (detaching) session?.detach();
      else session?.hangUp();
    }
  });
  socket.on('error', () => leave(1011, 'connection error'));
  try {
    session = await sessions.start(containerId, process, {
      onOutput: (stream, data) => {
        if (gone) return;
        if (socket.bufferedAmount > MAX_UNREAD_OUTPUT_BYTES) {
          leave(1008, 'the client does not read its output');
          return;
        }
        const frame = Buffer.allocUnsafe(data.length + 1);
        frame[0] = STREAM_BYTE[stream];
        data.copy(frame, 1);
        socket.send(frame, { binary: true });
      },
      onExit: (exitCode) => {
        if (gone) return;
        gone = true;
        socket.send(JSON.stringify({ type: 'exit', exitCode }));
        socket.close(1000, 'process exited');
      },
    });
  } catch (error) {
    if (!gone) {
      const message = error instanceof Error ? error.message : String(error);
      socket.send(JSON.stringify({ type: 'error', message }));
      leave(1011, 'the session could not start');
    }
    return;
  }
  if (gone) {
    if (detaching) {
      for (const chunk of early.splice(0)) await session.write(chunk);
      session.detach();
    } else session.hangUp();
    return;
  }
  socket.send(JSON.stringify({ type: 'started', session: session.id, pid: session.pid }));
  for (const chunk of early.splice(0)) await session.write(chunk);
  if (detaching) detach();
  else if (earlyEof) session.endInput();
}

export default execSessionRoutes;
