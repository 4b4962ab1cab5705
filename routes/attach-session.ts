/*
 * Attach to a container's own process over a WebSocket (`docker attach` for runcd's API): its terminal, its
 * output, its stdin. What can refuse is checked before the upgrade, so a refusal is a plain HTTP 4xx; the frames
 * are described in the route's OpenAPI description, their only specification.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { DEFAULT_DETACH_KEYS, DetachKeyScanner, parseDetachKeys } from '../src/detach-keys.js';
import { DomainError, UpgradeRequiredError } from '../src/errors.js';
import type { Attachment, ContainerAttach } from '../src/lifecycle/container-attach.js';
import { ContainerIdParams, ProblemSchema } from '../src/schemas/common.js';
import { AttachSessionQuery, SessionControl } from '../src/schemas/container.js';
import { MAX_UNREAD_OUTPUT_BYTES } from './exec-session.js';

export interface AttachSessionRouteOptions {
  attach: ContainerAttach;
}

const STREAM_BYTE = { stdout: 1, stderr: 2 } as const;

const FRAMES = `Attaches to the container's own process (created, running or paused), as \`docker attach\` does: a
terminal container (process.terminal: true) gives its pty, any other its output only. Frames, as for exec/session:
- server → client, binary: output, the first byte the stream (1 stdout, 2 stderr; a terminal has only 1). Output
  from before the attach is in the container's log, not here.
- server → client, text: \`{"type":"started","pid":PID,"tty":B,"stdin":B}\` once input reaches the process (at
  once for a running container; for a created one at its start: nothing typed reaches a container before it
  runs, as a ^C there would kill it); \`{"type":"detached"}\` when the detach keys were typed, then close 1000;
  \`{"type":"exit","exitCode":N}\` when the container's process ended, then close 1000.
- client → server, binary: bytes for the process's stdin (keystrokes; dropped without a terminal, which has no
  stdin). The detach keys (\`detachKeys\`, default ${DEFAULT_DETACH_KEYS}) never reach the process.
- client → server, text: \`{"type":"resize","rows":R,"cols":C}\` resizes the terminal; \`{"type":"eof"}\` ends this
  client's input (the terminal's stdin stays open for the next attach: type ^D to end the shell).
Leaving (a close, the detach keys, a malformed text frame: close 1008, or 8 MiB of unread output) never touches
the container: attach again at will, also after runcd restarted.`;

const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((status) => [status, ProblemSchema]));

const attachSessionRoutes: FastifyPluginAsyncZod<AttachSessionRouteOptions> = async (app, { attach }) => {
  app.route({
    method: 'GET',
    url: '/containers/:id/attach/session',
    // What exec needs: typing into a container's terminal is as much as running a process in it.
    config: { access: 'admin' },
    schema: {
      operationId: 'attachSession',
      tags: ['containers'],
      summary:
        "Attach to a container's process over a WebSocket: its terminal, output, stdin, resize, detach",
      description: FRAMES,
      params: ContainerIdParams,
      querystring: AttachSessionQuery,
      response: {
        101: z.null().describe('Switching Protocols: the attachment runs over the WebSocket'),
        ...errors(400, 403, 404, 409, 426, 501, 503),
      },
    },
    preHandler: async (request) => {
      attach.check(request.params.id);
    },
    handler: async () => {
      throw new UpgradeRequiredError(
        'websocket_required',
        'this route is a WebSocket: connect with Upgrade: websocket (e.g. runcctl attach)',
      );
    },
    wsHandler: (socket: WebSocket, request) => {
      void runAttachment(app, request, socket, attach, request.params.id, request.query);
    },
  });
};

async function runAttachment(
  app: Pick<FastifyInstance, 'auditTakenOver'>,
  request: FastifyRequest,
  socket: WebSocket,
  attach: ContainerAttach,
  id: string,
  query: AttachSessionQuery,
): Promise<void> {
  const scanner = new DetachKeyScanner(parseDetachKeys(query.detachKeys ?? DEFAULT_DETACH_KEYS));
  let attachment: Attachment | undefined;
  let gone = false;
  let audited = false;
  let startedPid: number | undefined;
  // A running container's start is reported while attach() is still returning: the frame waits for the handle.
  const announceStarted = () => {
    if (gone || !attachment || startedPid === undefined) return;
    socket.send(
      JSON.stringify({ type: 'started', pid: startedPid, tty: attachment.tty, stdin: attachment.stdin }),
    );
  };
  const audit = (status: number) => {
    if (audited) return;
    audited = true;
    app.auditTakenOver(request, status);
  };
  const leave = (code: number, reason: string, frame?: Record<string, unknown>) => {
    if (gone) return;
    gone = true;
    attachment?.detach();
    if (frame && socket.readyState === socket.OPEN) socket.send(JSON.stringify(frame));
    socket.close(code, reason);
  };
  const forward = (data: Buffer) => {
    const input = scanner.scan(data);
    if (input.length > 0 && attachment && !attachment.write(input)) {
      leave(1008, 'too much input before the container started');
      return;
    }
    if (scanner.detached) leave(1000, 'detached', { type: 'detached' });
  };
  // Frames before the attachment is in place wait here, in order (bounded by the socket's maxPayload each).
  const early: Array<{ data: Buffer; binary: boolean }> = [];
  const onFrame = (data: Buffer, binary: boolean) => {
    if (gone) return;
    if (!attachment) {
      if (early.length >= 1024) leave(1008, 'too many frames before the attachment');
      else early.push({ data, binary });
      return;
    }
    if (binary) {
      forward(data);
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
    if (control.type === 'eof') attachment.endInput();
    else resize(attachment, control.rows, control.cols);
  };
  socket.on('message', onFrame);
  socket.on('close', () => {
    gone = true;
    attachment?.detach();
    audit(101);
  });
  socket.on('error', () => leave(1011, 'connection error'));
  try {
    attachment = await attach.attach(id, {
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
      onStarted: (pid) => {
        startedPid = pid;
        announceStarted();
      },
      onEnd: (exitCode) => leave(1000, 'the container ended', { type: 'exit', exitCode }),
    });
  } catch (error) {
    if (!gone) {
      const code = error instanceof DomainError ? error.code : 'internal_error';
      const message = error instanceof Error ? error.message : String(error);
      socket.send(JSON.stringify({ type: 'error', code, message }));
      leave(1011, 'the attachment could not start');
    }
    audit(error instanceof DomainError ? error.status : 500);
    return;
  }
  if (gone) {
    attachment.detach();
    return;
  }
  if (query.rows !== undefined && query.cols !== undefined) resize(attachment, query.rows, query.cols);
  announceStarted();
  for (const frame of early.splice(0)) onFrame(frame.data, frame.binary);
}

function resize(attachment: Attachment, rows: number, cols: number): void {
  try {
    attachment.resize(rows, cols);
  } catch {
    // The terminal is gone with its process: the exit frame follows.
  }
}

export default attachSessionRoutes;
