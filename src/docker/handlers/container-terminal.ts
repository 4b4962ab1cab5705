import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DetachKeyScanner, parseDetachKeys } from '../../detach-keys.js';
import type { Attachment } from '../../lifecycle/container-attach.js';
import { PeerStream } from '../../peer-stream.js';
import type { OutputStream } from '../../runtime/attach-socket.js';
import type { DockerContext, Query } from '../docker-context.js';
import { DockerError, notImplemented } from '../docker-errors.js';
import { resolveContainer } from '../docker-ids.js';
import { frame, openRawStream } from '../docker-stream.js';
import { first, idParam, queryBool } from '../translate/params.js';
import { takeUpgradeInput } from '../upgrade-requests.js';
import { endRawStream } from './exec-support.js';

/** Output a client does not read is dropped past this: the container is never held back by a stalled client. */
const MAX_UNREAD_OUTPUT_BYTES = 8 * 1024 * 1024;

/**
 * `docker run -it`, `docker attach` and `docker start -ai` on a terminal container: the hijacked connection is
 * bridged to runcd's attachment (ContainerAttach, conmon's attach socket), raw bytes both ways as Docker sends
 * them for a TTY. Detach keys are scanned here (`detachKeys`, Docker's default ctrl-p,ctrl-q), so the sequence
 * never reaches the container; leaving, by detach or by closing the connection, never touches the container.
 */
export async function attachTerminal(
  request: FastifyRequest,
  reply: FastifyReply,
  context: DockerContext,
  id: string,
): Promise<void> {
  const attach = context.deps.attach!;
  const query = request.query as Query;
  let keys: Uint8Array;
  try {
    keys = parseDetachKeys(first(query.detachKeys) ?? '');
  } catch (error) {
    throw new DockerError(400, (error as Error).message);
  }
  const withStdin = queryBool(query.stdin);
  const withOutput = queryBool(query.stdout) || queryBool(query.stderr);
  // Output that comes before the stream is open (between the attach and the 101) is kept, not lost.
  let peer: PeerStream | undefined;
  let tty = true;
  const early: { stream: OutputStream; data: Buffer }[] = [];
  let ended = false;
  // A TTY has one stream; without one, Docker's multiplexed frames keep stdout and stderr apart.
  const bytesOf = (stream: OutputStream, data: Buffer) => (tty ? data : frame(stream, data));
  const handlers = {
    onOutput: (stream: OutputStream, data: Buffer) => {
      if (!withOutput) return;
      if (!peer) early.push({ stream, data });
      else if (request.raw.socket.writableLength > MAX_UNREAD_OUTPUT_BYTES) peer.destroy();
      else peer.write(bytesOf(stream, data));
    },
    onStarted: () => undefined,
    onEnd: () => {
      ended = true;
      if (peer) endRawStream(peer);
    },
  };
  const upgrade = /\bupgrade\b/i.test(request.headers.connection ?? '');
  let attachment: Attachment;
  if (context.containers.get(id).status === 'stopped') {
    // `docker start -ai`: the CLI attaches, then starts. The stream opens now and the attach follows the start
    // (conmon's attach socket is made anew by it); output the process writes before that is in `docker logs`.
    reply.hijack();
    peer = new PeerStream(request.raw.socket);
    openRawStream(peer, upgrade, 'application/vnd.docker.raw-stream');
    const opened = peer;
    if (!(await attach.nextStart(id, opened.orWhen(context.closing)))) {
      endRawStream(opened);
      return;
    }
    try {
      attachment = await attach.attach(id, handlers);
    } catch {
      // Ended already (a process that exits at once): its output is in the log, its code in wait.
      endRawStream(opened);
      return;
    }
    return bridge(request, context, opened, attachment, keys, withStdin);
  }
  attachment = await attach.attach(id, handlers);
  tty = attachment.tty;
  reply.hijack();
  const socket = request.raw.socket;
  peer = new PeerStream(socket);
  openRawStream(
    peer,
    upgrade,
    attachment.tty ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream',
  );
  for (const { stream, data } of early.splice(0)) peer.write(bytesOf(stream, data));
  if (ended) {
    endRawStream(peer);
    return;
  }
  bridge(request, context, peer, attachment, keys, withStdin);
}

/** Input from the client's connection to the attachment, through the detach-key scanner; leaving detaches. */
function bridge(
  request: FastifyRequest,
  context: DockerContext,
  peer: PeerStream,
  attachment: Attachment,
  keys: Uint8Array,
  withStdin: boolean,
): void {
  const socket = request.raw.socket;
  const leave = () => attachment.detach();
  peer.signal.addEventListener('abort', leave, { once: true });
  context.closing.addEventListener('abort', () => peer.destroy(), { once: true });
  // What the client sent since its request (the CLI types as soon as it asked) was held for this moment.
  const held = takeUpgradeInput(socket);
  if (!withStdin) return;
  const scanner = new DetachKeyScanner(keys);
  const input = (data: Buffer) => {
    if (scanner.detached) return;
    const forward = scanner.scan(data);
    if (forward.length > 0 && !attachment.write(forward)) {
      // Over the input held for a container that has not started yet: the client is cut off, never the container.
      peer.destroy();
      return;
    }
    if (scanner.detached) {
      leave();
      endRawStream(peer);
    }
  };
  for (const chunk of held?.early.splice(0) ?? []) input(chunk);
  // The client's end of input (docker attach < file, a half-close) is the process's EOF; conmon keeps the
  // container's stdin open for the next attach.
  if (held?.ended || socket.readableEnded) {
    attachment.endInput();
    return;
  }
  socket.on('data', input);
  socket.once('end', () => attachment.endInput());
  socket.resume();
}

/** POST /containers/ID/resize and the terminal side of attach, registered with the other container routes. */
export function registerTerminalRoutes(app: FastifyInstance, context: DockerContext): void {
  const { deps } = context;
  app.post('/containers/:id/resize', { config: { access: 'operate' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    if (!deps.attach)
      throw notImplemented('POST /containers/{id}/resize', 'this runcd has no attach sessions');
    const query = request.query as Query;
    const rows = Number(first(query.h));
    const cols = Number(first(query.w));
    for (const [name, value] of [
      ['h', rows],
      ['w', cols],
    ] as const) {
      if (!Number.isInteger(value) || value < 1 || value > 65535) {
        throw new DockerError(400, `invalid ${name}: a terminal size is 1 to 65535 (h rows, w columns)`);
      }
    }
    deps.attach.resize(id, rows, cols);
    return reply.code(200).send();
  });
}
