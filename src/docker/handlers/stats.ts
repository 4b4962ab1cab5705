import { cpus, totalmem } from 'node:os';
import { PassThrough } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { DomainError } from '../../errors.js';
import { PeerStream } from '../../peer-stream.js';
import type { ContainerStats } from '../../schemas/container.js';
import type { DockerContext, Query } from '../docker-context.js';
import { resolveContainer } from '../docker-ids.js';
import { dockerStatsOf, type StatsSample } from '../translate/stats.js';
import { first, idParam, queryBool } from '../translate/params.js';
import { hostCpuNanoseconds } from './system-facts.js';

/** A container that has no processes (stopped, or not started) has no stats: Docker answers zeroes for it. */
const NO_PROCESSES = new Set(['container_stopped', 'container_not_running', 'container_not_created']);

/** GET /containers/ID/stats: `docker stats` (streamed, one line a second) and `docker stats --no-stream`. */
export function registerStatsRoutes(app: FastifyInstance, context: DockerContext): void {
  const { containers } = context;
  const host = () => ({ onlineCpus: cpus().length, memoryBytes: totalmem() });
  const sampleOf = (stats: ContainerStats): StatsSample => ({
    stats,
    systemCpuNanoseconds: hostCpuNanoseconds(),
  });
  const sample = async (id: string): Promise<StatsSample | undefined> => {
    try {
      return sampleOf(await containers.stats(id));
    } catch (error) {
      if (error instanceof DomainError && NO_PROCESSES.has(error.code)) return undefined;
      throw error;
    }
  };

  app.get('/containers/:id/stats', { config: { access: 'read' } }, async (request, reply) => {
    const id = resolveContainer(context, idParam(request));
    const query = request.query as Query;
    const stream = first(query.stream) === undefined || queryBool(query.stream);
    if (!stream) {
      const before = await sample(id);
      // Docker fills precpu_stats with a sample an interval earlier (the CLI's CPU % needs both), unless one-shot.
      if (queryBool(query['one-shot']) || before === undefined) {
        return dockerStatsOf(id, before, undefined, host(), context.names.nameOf(id));
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
      return dockerStatsOf(id, await sample(id), before, host(), context.names.nameOf(id));
    }
    const firstSample = await sample(id);
    const body = new PassThrough();
    const peer = new PeerStream(body);
    if (firstSample === undefined) {
      peer.end(
        `${JSON.stringify(dockerStatsOf(id, undefined, undefined, host(), context.names.nameOf(id)))}\n`,
      );
    } else {
      let previous: StatsSample | undefined = firstSample;
      void containers
        .streamStats(
          id,
          1,
          (stats) => {
            const current = sampleOf(stats);
            // A reader that does not read gets no backlog: the sample is dropped, the next one comes.
            if (!peer.behind)
              peer.write(
                `${JSON.stringify(dockerStatsOf(id, current, previous, host(), context.names.nameOf(id)))}\n`,
              );
            previous = current;
          },
          peer.orWhen(context.closing),
        )
        .catch(() => undefined)
        .finally(() => peer.end());
    }
    return reply.type('application/json').send(body);
  });
}
