import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { ContainerResourceService } from '../src/lifecycle/container-resources.js';
import { ContainerIdParams, ProblemSchema } from '../src/schemas/common.js';
import { ContainerResources, UpdateResourcesBody } from '../src/schemas/bundle.js';

export interface ContainerResourceRoutesOptions {
  resources: ContainerResourceService;
}

const containerResourceRoutes: FastifyPluginAsyncZod<ContainerResourceRoutesOptions> = async (
  app,
  { resources },
) => {
  app.patch(
    '/containers/:id/resources',
    {
      config: { access: 'admin' },
      schema: {
        operationId: 'updateContainerResources',
        tags: ['containers'],
        summary: "Change a live container's memory, CPU and pids limits (runc update); 409 when stopped",
        params: ContainerIdParams,
        body: UpdateResourcesBody,
        response: {
          200: ContainerResources,
          ...Object.fromEntries([400, 404, 409, 422].map((status) => [status, ProblemSchema])),
        },
      },
    },
    async (request) => resources.update(request.params.id, request.body),
  );
};

export default containerResourceRoutes;
