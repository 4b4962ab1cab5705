import type { FastifyInstance } from 'fastify';
import { DomainError } from '../../errors.js';
import type { NetworkService } from '../../network/network-service.js';
import type { Network } from '../../schemas/network.js';
import type { DockerContext } from '../docker-context.js';
import { DockerError, notImplemented } from '../docker-errors.js';
import { dockerIdOf, resolveContainer } from '../docker-ids.js';
import { dockerNetworkIdOf, dockerNetworkOf } from '../translate/networks.js';

interface CreateNetworkBody {
  Name?: unknown;
  Driver?: unknown;
  IPAM?: { Config?: Array<{ Subnet?: unknown }> };
  Labels?: unknown;
  Options?: Record<string, unknown>;
  Internal?: unknown;
  EnableIPv6?: unknown;
}

/**
 * `docker network ls|inspect|create|rm|connect|disconnect` (and docker-compose's network steps) on runcd's
 * networks.
 */
export function registerNetworkRoutes(
  app: FastifyInstance,
  context: DockerContext,
  networks: NetworkService,
): void {
  const { containers } = context;
  const resolve = (nameOrId: string): Network => {
    const found = networks
      .list()
      .find(
        (network) =>
          network.name === nameOrId ||
          (nameOrId.length >= 3 && dockerNetworkIdOf(network.name).startsWith(nameOrId)),
      );
    if (!found) throw new DockerError(404, `network ${nameOrId} not found`);
    return found;
  };
  const shape = (network: Network) =>
    dockerNetworkOf(
      network,
      network.containers.flatMap((id) => {
        try {
          return [containers.get(id)];
        } catch {
          return [];
        }
      }),
      (container) => context.names.nameOf(container.id),
    );

  app.get('/networks', { config: { access: 'read' } }, async () => networks.list().map(shape));

  app.get('/networks/:name', { config: { access: 'read' } }, async (request) =>
    shape(resolve((request.params as { name: string }).name)),
  );

  app.post('/networks/create', { config: { access: 'admin' } }, async (request, reply) => {
    const body = (request.body ?? {}) as CreateNetworkBody;
    if (typeof body.Name !== 'string' || body.Name === '')
      throw new DockerError(400, 'network name is required');
    if (body.Driver !== undefined && body.Driver !== '' && body.Driver !== 'bridge') {
      throw notImplemented(`network driver ${String(body.Driver)}`, 'runcd networks are bridges');
    }
    if (body.Internal === true || body.EnableIPv6 === true) {
      throw notImplemented('internal and IPv6 networks');
    }
    const configs = body.IPAM?.Config ?? [];
    if (configs.length > 1) throw notImplemented('networks with several subnets');
    const subnet = typeof configs[0]?.Subnet === 'string' ? configs[0].Subnet : undefined;
    const labels =
      body.Labels && typeof body.Labels === 'object' ? (body.Labels as Record<string, string>) : undefined;
    // `docker network create -o com.docker.network.bridge.name=br-web`: the only driver option runcd has.
    const bridge = body.Options?.['com.docker.network.bridge.name'];
    const unknownOption = Object.keys(body.Options ?? {}).find(
      (key) => key !== 'com.docker.network.bridge.name',
    );
    if (unknownOption) throw notImplemented(`network option ${unknownOption}`);
    try {
      const network = await networks.create({
        name: body.Name,
        ...(subnet ? { subnet } : {}),
        ...(typeof bridge === 'string' && bridge !== '' ? { bridge } : {}),
        ...(labels && Object.keys(labels).length > 0 ? { labels } : {}),
      });
      return reply.code(201).send({ Id: dockerNetworkIdOf(network.name), Warning: '' });
    } catch (error) {
      if (error instanceof DomainError && error.code === 'network_exists') {
        throw new DockerError(409, `network with name ${body.Name} already exists`);
      }
      if (error instanceof DomainError && error.status < 500)
        throw new DockerError(error.status, error.message);
      throw error;
    }
  });

  app.delete('/networks/:name', { config: { access: 'admin' } }, async (request, reply) => {
    const network = resolve((request.params as { name: string }).name);
    try {
      await networks.delete(network.name);
    } catch (error) {
      if (error instanceof DomainError && error.status < 500)
        throw new DockerError(error.status, error.message);
      throw error;
    }
    return reply.code(204).send();
  });

  // In any status: a created, running or paused container's pinned namespace gets CNI ADD/DEL at once; a stopped
  // one gets the change at its next start (ContainerNetworking.connect).
  app.post('/networks/:name/connect', { config: { access: 'admin' } }, async (request, reply) => {
    const network = resolve((request.params as { name: string }).name);
    const body = (request.body ?? {}) as {
      Container?: unknown;
      EndpointConfig?: { Aliases?: unknown } | null;
    };
    if (typeof body.Container !== 'string' || body.Container === '')
      throw new DockerError(400, 'Container is required');
    const id = resolveContainer(context, body.Container);
    const given = Array.isArray(body.EndpointConfig?.Aliases) ? body.EndpointConfig.Aliases.map(String) : [];
    // On a user network a container answers to its short id too, as with Docker.
    const aliases = network.default ? given : [...given, dockerIdOf(id).slice(0, 12)];
    await dockerAnswer(() => containers.connectNetwork(id, network.name, aliases));
    return reply.code(200).send();
  });

  app.post('/networks/:name/disconnect', { config: { access: 'admin' } }, async (request, reply) => {
    const network = resolve((request.params as { name: string }).name);
    const body = (request.body ?? {}) as { Container?: unknown };
    if (typeof body.Container !== 'string' || body.Container === '')
      throw new DockerError(400, 'Container is required');
    const id = resolveContainer(context, body.Container);
    await dockerAnswer(() => containers.disconnectNetwork(id, network.name));
    return reply.code(200).send();
  });
}

/** A domain refusal (4xx) as Docker's `{message}` with the same status; anything else as it is. */
async function dockerAnswer<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof DomainError && error.status < 500)
      throw new DockerError(error.status, error.message);
    throw error;
  }
}
