import { randomBytes } from 'node:crypto';
import { isAbsolute, relative } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Volume, VolumeService } from '../../bundles/volume-service.js';
import type { DockerContext, Query } from '../docker-context.js';
import { DockerError } from '../docker-errors.js';
import { matchesLabels, parseFilters } from '../translate/params.js';

/** Docker's Volume object for a runcd volume (the local driver, as its directory is a local one). */
function volumeJson(volume: Volume): Record<string, unknown> {
  return {
    Name: volume.name,
    Driver: 'local',
    Mountpoint: volume.path,
    CreatedAt: volume.created,
    Labels: volume.labels,
    Scope: 'local',
    Options: {},
  };
}

const VOLUME_FILTERS = new Set(['name', 'label']);

/**
 * `docker volume create|ls|inspect|rm` over the volume service. A volume is in use while a container's config
 * (runcd's checked copy, what runc runs) mounts its directory; removal is refused then, as Docker does.
 */
export function registerVolumeRoutes(
  app: FastifyInstance,
  context: DockerContext,
  volumes: VolumeService,
): void {
  const { containers, names } = context;

  const usersOf = async (volume: Volume): Promise<string[]> => {
    const users: string[] = [];
    for (const container of containers.list()) {
      const config = await containers.runningConfig(container.id).catch(() => undefined);
      const mounted = (config?.mounts ?? []).some((mount) => {
        if (mount.source === undefined) return false;
        const below = relative(volume.path, mount.source);
        return below === '' || (!below.startsWith('..') && !isAbsolute(below));
      });
      if (mounted) users.push(names.nameOf(container.id));
    }
    return users;
  };

  app.get('/volumes', { config: { access: 'read' } }, async (request) => {
    const filters = parseFilters((request.query as Query).filters);
    for (const key of filters.keys()) {
      if (!VOLUME_FILTERS.has(key)) throw new DockerError(400, `invalid filter '${key}'`);
    }
    const wantedNames = filters.get('name');
    const list = volumes
      .list()
      .filter((volume) => !wantedNames?.length || wantedNames.some((name) => volume.name.includes(name)))
      .filter((volume) => matchesLabels(volume.labels, filters.get('label')));
    return { Volumes: list.map(volumeJson), Warnings: [] };
  });

  app.post('/volumes/create', { config: { access: 'admin' } }, async (request, reply) => {
    const body = (request.body ?? {}) as {
      Name?: unknown;
      Driver?: unknown;
      DriverOpts?: unknown;
      Labels?: unknown;
    };
    if (body.Driver !== undefined && body.Driver !== '' && body.Driver !== 'local') {
      throw new DockerError(400, `runcd does not support volume driver ${String(body.Driver)}: only local`);
    }
    if (body.DriverOpts && typeof body.DriverOpts === 'object' && Object.keys(body.DriverOpts).length > 0) {
      throw new DockerError(
        400,
        'runcd does not support volume driver options (--opt): its volumes are directories in its state directory',
      );
    }
    const name =
      typeof body.Name === 'string' && body.Name !== '' ? body.Name : randomBytes(32).toString('hex');
    const labels =
      body.Labels && typeof body.Labels === 'object' ? (body.Labels as Record<string, string>) : {};
    return reply.code(201).send(volumeJson(await volumes.create(name, labels)));
  });

  app.get('/volumes/:name', { config: { access: 'read' } }, async (request) =>
    volumeJson(volumes.get((request.params as { name: string }).name)),
  );

  app.delete('/volumes/:name', { config: { access: 'admin' } }, async (request, reply) => {
    const volume = volumes.get((request.params as { name: string }).name);
    await volumes.remove(volume.name, await usersOf(volume));
    return reply.code(204).send();
  });
}
