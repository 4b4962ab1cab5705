import { assertAllowed } from '../../lifecycle/container-states.js';
import { PeerStream } from '../../peer-stream.js';
import { ExecBody } from '../../schemas/container.js';
import type { DockerContext } from '../docker-context.js';
import { DockerError, notImplemented } from '../docker-errors.js';
import { resolveContainer } from '../docker-ids.js';
import { asDocker } from '../docker-status.js';
import { frame, openRawStream } from '../docker-stream.js';
import { idParam } from '../translate/params.js';
import { runExec, DISCARDED_OUTPUT, endRawStream, execInspectOf } from './exec-support.js';
import type { FastifyInstance } from 'fastify';

/** docker exec: a session is created, then started (attached or detached), then inspected for its exit code. */
export async function registerExecRoutes(app: FastifyInstance, context: DockerContext): Promise<void> {
  const { containers, execs } = context;
  app.post('/containers/:id/exec', { config: { access: 'admin' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    const body = (request.body ?? {}) as Record<string, unknown>;
    if (body.Tty === true) {
      throw notImplemented('exec with a TTY (docker exec -t)', 'runcd execs without a terminal; drop -t');
    }
    if (body.AttachStdin === true) {
      throw notImplemented('exec with stdin (docker exec -i)', 'runcd execs without stdin; drop -i');
    }
    const parsed = ExecBody.safeParse({
      args: body.Cmd,
      ...(body.Env !== undefined && body.Env !== null ? { env: body.Env } : {}),
      ...(typeof body.WorkingDir === 'string' && body.WorkingDir !== '' ? { cwd: body.WorkingDir } : {}),
      ...(typeof body.User === 'string' && body.User !== '' ? { user: body.User } : {}),
    });
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field =
        { args: 'Cmd', env: 'Env', cwd: 'WorkingDir', user: 'User' }[String(issue?.path[0])] ?? 'body';
      throw new DockerError(400, `exec ${field}: ${issue?.message ?? 'invalid'}`);
    }
    // The exec runs only at start; Docker refuses it at create already, so the state table is asked now.
    await asDocker('exec', id, async () => assertAllowed('exec', containers.get(id)));
    const session = execs.create(id, parsed.data);
    return reply.code(201).send({ Id: session.id });
  });

  app.post('/exec/:id/start', { config: { access: 'admin' } }, async (request, reply) => {
    const session = execs.get(idParam(request));
    if (!session) throw new DockerError(404, `No such exec instance: ${idParam(request)}`);
    if (session.started) throw new DockerError(409, `exec instance ${session.id} has already been started`);
    const body = (request.body ?? {}) as Record<string, unknown>;
    if (body.Tty === true) throw notImplemented('exec with a TTY (docker exec -t)', 'drop -t');
    session.started = true;
    session.running = true;
    if (body.Detach === true) {
      void runExec(containers, execs, session, DISCARDED_OUTPUT);
      return reply.code(200).send();
    }
    const upgrade = /\bupgrade\b/i.test(request.headers.connection ?? '');
    reply.hijack();
    const peer = new PeerStream(request.raw.socket);
    openRawStream(peer, upgrade, 'application/vnd.docker.multiplexed-stream');
    await runExec(containers, execs, session, {
      write: (stream, chunk) => peer.write(frame(stream, chunk)),
      drained: () => peer.drained(),
      signal: peer.signal,
    });
    endRawStream(peer);
  });

  app.get('/exec/:id/json', { config: { access: 'read' } }, async (request) => {
    const session = execs.get(idParam(request));
    if (!session) throw new DockerError(404, `No such exec instance: ${idParam(request)}`);
    return execInspectOf(session);
  });
}
