import { assertAllowed } from '../../lifecycle/container-states.js';
import { PeerStream } from '../../peer-stream.js';
import type { ExecOutput } from '../../runtime/runc.js';
import type { DockerContext, Query } from '../docker-context.js';
import { DockerError, notImplemented } from '../docker-errors.js';
import { resolveContainer } from '../docker-ids.js';
import { asDocker } from '../docker-status.js';
import { frame, openRawStream } from '../docker-stream.js';
import type { ExecSession } from '../exec-sessions.js';
import { execCreateOf, execStartOf, resizeQueryOf } from '../translate/exec-options.js';
import { idParam } from '../translate/params.js';
import { startAttached, startDetached } from './exec-interactive.js';
import { runExec, DISCARDED_OUTPUT, endRawStream, execInspectOf } from './exec-support.js';
import type { FastifyInstance } from 'fastify';

/**
 * docker exec: a session is created, then started (attached or detached), then inspected for its exit code.
 * With a terminal or a stdin (`-t`, `-i`) it runs as an interactive session through conmon (exec-interactive.ts);
 * otherwise as a plain `runc exec` whose pipes runcd reads.
 */
export async function registerExecRoutes(app: FastifyInstance, context: DockerContext): Promise<void> {
  const { containers, execs, sessions } = context;
  app.post('/containers/:id/exec', { config: { access: 'admin' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    const { request: exec, attachment, size } = execCreateOf((request.body ?? {}) as Record<string, unknown>);
    if ((attachment.tty || attachment.stdin) && !sessions) {
      throw notImplemented(
        'exec with a TTY or stdin (docker exec -t / -i)',
        'this runcd has no exec sessions',
      );
    }
    // The exec runs only at start; Docker refuses it at create already, so the state table is asked now.
    await asDocker('exec', id, async () => assertAllowed('exec', containers.get(id)));
    const session = execs.create(id, exec, attachment, size);
    return reply.code(201).send({ Id: session.id });
  });

  app.post('/exec/:id/start', { config: { access: 'admin' } }, async (request, reply) => {
    const session = requireExec(context, idParam(request));
    if (session.started) throw new DockerError(409, `exec instance ${session.id} has already been started`);
    const start = execStartOf((request.body ?? {}) as Record<string, unknown>);
    if (start.size) session.size = start.size;
    const interactive = session.attachment.tty || session.attachment.stdin;
    // Refused before anything is taken over: too many sessions is Docker's 503, not an exec that failed.
    if (interactive) sessions!.checkAvailable();
    session.started = true;
    session.running = true;
    if (interactive) {
      const startOf = { sessions: sessions!, execs, exec: session, rawStream: start.tty };
      if (start.detach) {
        await startDetached(startOf);
        return reply.code(200).send();
      }
      await startAttached(startOf, request, reply);
      return;
    }
    if (start.detach) {
      void runExec(containers, execs, session, DISCARDED_OUTPUT);
      return reply.code(200).send();
    }
    const upgrade = /\bupgrade\b/i.test(request.headers.connection ?? '');
    reply.hijack();
    const peer = new PeerStream(request.raw.socket);
    openRawStream(peer, upgrade, 'application/vnd.docker.multiplexed-stream');
    await runExec(containers, execs, session, attachedOutput(session, peer));
    endRawStream(peer);
  });

  // The CLI sends one right after the start (and the start may still be running it), then one per SIGWINCH.
  app.post('/exec/:id/resize', { config: { access: 'admin' } }, async (request, reply) => {
    const session = requireExec(context, idParam(request));
    const size = resizeQueryOf(request.query as Query);
    if (!session.attachment.tty) {
      throw new DockerError(
        400,
        `exec instance ${session.id} has no terminal to resize (it was created without Tty)`,
      );
    }
    if (session.started && !session.running) {
      throw new DockerError(409, `exec instance ${session.id} is not running`);
    }
    if (!session.resize) {
      session.size = size;
    } else {
      try {
        session.resize(size);
      } catch {
        // The terminal went with its process between the check and the write.
        throw new DockerError(409, `exec instance ${session.id} is not running`);
      }
    }
    return reply.code(200).send();
  });

  app.get('/exec/:id/json', { config: { access: 'read' } }, async (request) => {
    return execInspectOf(requireExec(context, idParam(request)));
  });
}

function requireExec(context: DockerContext, id: string): ExecSession {
  const session = context.execs.get(id);
  if (!session) throw new DockerError(404, `No such exec instance: ${id}`);
  return session;
}

/** The multiplexed frames of the streams the exec attached (Docker sends none of the others). */
function attachedOutput(session: ExecSession, peer: PeerStream): ExecOutput {
  return {
    write: (stream, chunk) =>
      (stream === 'stdout' ? session.attachment.stdout : session.attachment.stderr)
        ? peer.write(frame(stream, chunk))
        : true,
    drained: () => peer.drained(),
    signal: peer.signal,
  };
}
