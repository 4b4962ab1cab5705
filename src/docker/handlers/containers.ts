import { ConflictError, DomainError } from '../../errors.js';
import type { DockerContext, Query } from '../docker-context.js';
import { DockerError } from '../docker-errors.js';
import { dockerIdOf, resolveContainer } from '../docker-ids.js';
import { imageRefOf } from '../translate/images.js';
import { asDocker, NOT_MODIFIED } from '../docker-status.js';
import { runViewOf, summaryOf, inspectOf } from '../translate/container-shapes.js';
import {
  parseFilters,
  matchesContainerFilters,
  first,
  queryBool,
  idParam,
  matchesLabels,
  timeParam,
  timeoutParam,
  signalParam,
} from '../translate/params.js';
import type { FastifyInstance } from 'fastify';
import type { Container } from '../../schemas/container.js';

/**
 * The container lifecycle: each handler calls the native operation and lets Docker's table (docker-status.ts)
 * translate a refusal; none re-reads state to decide.
 */
export async function registerContainerRoutes(app: FastifyInstance, context: DockerContext): Promise<void> {
  const { containers, deps, names } = context;
  app.get('/containers/json', { config: { access: 'read' } }, async (request) => {
    const query = request.query as Query;
    const filters = parseFilters(query.filters);
    let list = containers.list();
    if (!queryBool(query.all)) list = list.filter((container) => container.status !== 'stopped');
    const facts = {
      imageOf: (container: Container) => imageRefOf(deps.bundles, container.bundle).name,
      nameOf: (container: Container) => names.nameOf(container.id),
      createdOf: (reference: string) => {
        try {
          return containers.get(resolveContainer(context, reference)).created;
        } catch {
          return undefined;
        }
      },
    };
    list = list.filter((container) => matchesContainerFilters(container, filters, facts));
    list.sort((a, b) => b.created.localeCompare(a.created));
    const limit = query.limit === undefined ? undefined : Number(first(query.limit));
    if (limit !== undefined && Number.isInteger(limit) && limit > 0) list = list.slice(0, limit);
    return Promise.all(
      list.map(async (container) =>
        summaryOf(
          container,
          await runViewOf(containers, container),
          imageRefOf(deps.bundles, container.bundle),
          names.nameOf(container.id),
        ),
      ),
    );
  });

  app.get('/containers/:id/json', { config: { access: 'read' } }, async (request) => {
    const id = resolveContainer(context, idParam(request));
    const container = containers.get(id);
    return {
      ...inspectOf(
        container,
        await runViewOf(containers, container),
        imageRefOf(deps.bundles, container.bundle),
        names.nameOf(id),
      ),
      // The execs still running in it, as Docker lists them (null for none): how a detached exec is found again.
      ExecIDs: context.execs.runningIn(id),
    };
  });

  app.post('/containers/:id/start', { config: { access: 'operate' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    const started = await asDocker('start', id, async () => {
      try {
        await containers.start(id);
      } catch (error) {
        // runc cannot start a stopped container; `docker start` of an exited one runs it again from its bundle.
        if (!(error instanceof DomainError && error.code === 'container_stopped')) throw error;
        await containers.restart(id, { timeoutSeconds: 0, announce: 'start' });
      }
    });
    return reply.code(started === NOT_MODIFIED ? 304 : 204).send();
  });

  app.post('/containers/:id/stop', { config: { access: 'operate' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    const query = request.query as Query;
    const outcome = await asDocker('stop', id, () =>
      containers.stopReporting(id, {
        timeoutSeconds: timeoutParam(query.t),
        signal: query.signal === undefined ? undefined : signalParam(query.signal),
      }),
    );
    // Docker's 304: there was nothing to stop.
    return reply.code(outcome !== NOT_MODIFIED && outcome.stopped ? 204 : 304).send();
  });

  app.post('/containers/:id/restart', { config: { access: 'operate' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    await asDocker('restart', id, () =>
      containers.restart(id, { timeoutSeconds: timeoutParam((request.query as Query).t) }),
    );
    return reply.code(204).send();
  });

  app.post('/containers/:id/kill', { config: { access: 'operate' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    const query = request.query as Query;
    const signal = query.signal === undefined ? signalParam('SIGKILL') : signalParam(query.signal);
    await asDocker('kill', id, () => containers.kill(id, signal));
    return reply.code(204).send();
  });

  app.post('/containers/:id/pause', { config: { access: 'operate' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    await asDocker('pause', id, () => containers.pause(id));
    return reply.code(204).send();
  });

  app.post('/containers/:id/unpause', { config: { access: 'operate' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    await asDocker('unpause', id, () => containers.resume(id));
    return reply.code(204).send();
  });

  app.delete('/containers/:id', { config: { access: 'admin' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    const force = queryBool((request.query as Query).force);
    await asDocker('remove', id, () => containers.delete(id, { force }));
    return reply.code(204).send();
  });

  // docker container prune: every stopped container (label / until filters as Docker has them). One that was
  // started again between the list and its delete is refused by the delete and kept, as it should be.
  app.post('/containers/prune', { config: { access: 'admin' } }, async (request) => {
    const filters = parseFilters((request.query as Query).filters);
    for (const key of filters.keys()) {
      if (key !== 'label' && key !== 'until') throw new DockerError(400, `invalid filter '${key}'`);
    }
    const until = filters.get('until')?.[0];
    const before = until === undefined ? undefined : timeParam(until, 'until');
    const deleted: string[] = [];
    for (const container of containers.list()) {
      if (container.status !== 'stopped') continue;
      if (!matchesLabels(container.labels, filters.get('label'))) continue;
      if (before !== undefined && container.created > before) continue;
      try {
        await containers.delete(container.id, { force: false });
        deleted.push(dockerIdOf(container.id));
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
      }
    }
    return { ContainersDeleted: deleted, SpaceReclaimed: 0 };
  });

  app.get('/containers/:id/top', { config: { access: 'read' } }, async (request) => {
    const id = resolveContainer(context, idParam(request));
    const processes = await containers.processes(id);
    return {
      Titles: ['UID', 'PID', 'PPID', 'STAT', 'CMD'],
      Processes: processes.map((each) => [
        each.user,
        String(each.pid),
        String(each.ppid),
        each.state,
        each.command,
      ]),
    };
  });

  // docker rename: the Docker name is a row apart from the runc id (docker-names.ts), which never changes.
  app.post('/containers/:id/rename', { config: { access: 'admin' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    const name = first((request.query as Query).name);
    if (name === undefined || name === '') throw new DockerError(400, 'name is required (?name=)');
    names.rename(id, name);
    return reply.code(204).send();
  });
}
