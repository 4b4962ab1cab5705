import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { NetworkService } from '../src/network/network-service.js';
import { ProblemSchema } from '../src/schemas/common.js';
import { CreateNetworkBody, Network, NetworkNameParams } from '../src/schemas/network.js';

export interface NetworkRoutesOptions {
  networks: NetworkService;
}

const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((status) => [status, ProblemSchema]));

/**
 * CNI networks. Reading them is `read`; creating and deleting them is `admin`: a network is a bridge, NAT and
 * firewall rules on the host, and decides what containers on it can reach.
 */
const networkRoutes: FastifyPluginAsyncZod<NetworkRoutesOptions> = async (app, { networks }) => {
  app.post(
    '/networks',
    {
      config: { access: 'admin' },
      schema: {
        operationId: 'createNetwork',
        tags: ['networks'],
        summary: 'Create a bridge network (a CNI conflist: bridge + host-local + portmap + firewall)',
        body: CreateNetworkBody,
        response: { 201: Network, ...errors(400, 409) },
      },
    },
    async (request, reply) => {
      const network = await networks.create(request.body);
      return reply.code(201).header('location', `/networks/${network.name}`).send(network);
    },
  );

  app.get(
    '/networks',
    {
      config: { access: 'read' },
      schema: {
        operationId: 'listNetworks',
        tags: ['networks'],
        summary: 'List networks (the default one appears once a container has used it)',
        response: { 200: z.array(Network) },
      },
    },
    async () => networks.list(),
  );

  app.get(
    '/networks/:name',
    {
      config: { access: 'read' },
      schema: {
        operationId: 'getNetwork',
        tags: ['networks'],
        summary: 'Inspect a network',
        params: NetworkNameParams,
        response: { 200: Network, ...errors(400, 404) },
      },
    },
    async (request) => networks.get(request.params.name),
  );

  app.delete(
    '/networks/:name',
    {
      config: { access: 'admin' },
      schema: {
        operationId: 'deleteNetwork',
        tags: ['networks'],
        summary: 'Delete a network, its conflist, IPAM state and bridge; 409 while a container uses it',
        params: NetworkNameParams,
        response: { 204: z.null().describe('Deleted'), ...errors(400, 404, 409) },
      },
    },
    async (request, reply) => {
      await networks.delete(request.params.name);
      return reply.code(204).send(null);
    },
  );
};

export default networkRoutes;
