import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ContainerService } from '../src/lifecycle/container-service.js';
import { ContainerIdParams, ProblemSchema } from '../src/schemas/common.js';
import {
  Container,
  CreateContainerBody,
  DeleteContainerQuery,
  ExecBody,
  ExecResult,
  KillContainerQuery,
  ListContainersQuery,
} from '../src/schemas/container.js';

export interface ContainerRoutesOptions {
  containers: ContainerService;
}

const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((status) => [status, ProblemSchema]));

const containerRoutes: FastifyPluginAsyncZod<ContainerRoutesOptions> = async (app, { containers }) => {
  app.post(
    '/containers',
    {
      schema: {
        operationId: 'createContainer',
        tags: ['containers'],
        summary: 'Create a container from a bundle (runc create; with start: true, runc run)',
        body: CreateContainerBody,
        response: { 201: Container, ...errors(400, 409, 422) },
      },
    },
    async (request, reply) => {
      const container = await containers.create(request.body);
      return reply.code(201).header('location', `/containers/${container.id}`).send(container);
    },
  );

  app.get(
    '/containers',
    {
      schema: {
        operationId: 'listContainers',
        tags: ['containers'],
        summary: 'List containers (runc list)',
        querystring: ListContainersQuery,
        response: { 200: z.array(Container), ...errors(400) },
      },
    },
    async (request) => containers.list({ status: request.query.status, labels: request.query.label }),
  );

  app.get(
    '/containers/:id',
    {
      schema: {
        operationId: 'getContainer',
        tags: ['containers'],
        summary: 'Container state (runc state)',
        params: ContainerIdParams,
        response: { 200: Container, ...errors(400, 404) },
      },
    },
    async (request) => containers.get(request.params.id),
  );

  app.post(
    '/containers/:id/start',
    {
      schema: {
        operationId: 'startContainer',
        tags: ['containers'],
        summary: 'Start a created container (runc start)',
        params: ContainerIdParams,
        response: { 200: Container, ...errors(400, 404, 409) },
      },
    },
    async (request) => containers.start(request.params.id),
  );

  app.post(
    '/containers/:id/exec',
    {
      schema: {
        operationId: 'execInContainer',
        tags: ['containers'],
        summary: 'Run a process in a running container and return its exit code and output (runc exec)',
        params: ContainerIdParams,
        body: ExecBody,
        response: { 200: ExecResult, ...errors(400, 404, 409) },
      },
    },
    async (request) => containers.exec(request.params.id, request.body),
  );

  app.post(
    '/containers/:id/kill',
    {
      schema: {
        operationId: 'killContainer',
        tags: ['containers'],
        summary: 'Send a signal to the container init (runc kill); SIGKILL answers once the exit is recorded',
        params: ContainerIdParams,
        querystring: KillContainerQuery,
        response: { 204: z.null().describe('Signal delivered'), ...errors(400, 404, 409) },
      },
    },
    async (request, reply) => {
      await containers.kill(request.params.id, request.query.signal);
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/containers/:id',
    {
      schema: {
        operationId: 'deleteContainer',
        tags: ['containers'],
        summary: 'Delete a stopped container (runc delete); force=true kills it first',
        params: ContainerIdParams,
        querystring: DeleteContainerQuery,
        response: { 204: z.null().describe('Deleted'), ...errors(400, 404, 409) },
      },
    },
    async (request, reply) => {
      await containers.delete(request.params.id, { force: request.query.force });
      return reply.code(204).send(null);
    },
  );
};

export default containerRoutes;
