import type { Readable } from 'node:stream';
import type { FastifyPluginAsyncZod, ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { BundleService } from '../src/bundles/bundle-service.js';
import { InvalidInputError } from '../src/errors.js';
import { ProblemSchema } from '../src/schemas/common.js';
import {
  Bundle,
  BundleDetail,
  BundleIdParams,
  CreateBundleBody,
  RootfsUploadResult,
} from '../src/schemas/bundle.js';

export interface BundleRoutesOptions {
  bundles: BundleService;
}

const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((status) => [status, ProblemSchema]));

/** Tarball media types; gzip is recognised by its magic bytes whichever of them is sent. */
export const ROOTFS_MEDIA_TYPES = ['application/x-tar', 'application/gzip', 'application/x-gzip'];

const bundleRoutes: FastifyPluginAsyncZod<BundleRoutesOptions> = async (app, { bundles }) => {
  app.post(
    '/bundles',
    {
      config: { access: 'admin' },
      // A container's labels (or a bundle's spec) can be this large; every other body stays small.
      bodyLimit: 256 * 1024,
      schema: {
        operationId: 'createBundle',
        tags: ['bundles'],
        summary:
          'Create a managed bundle: config.json from `runc spec` plus these fields; rootfs copied from an import root or uploaded next',
        body: CreateBundleBody,
        response: { 201: Bundle, ...errors(400, 403, 409, 413) },
      },
    },
    async (request, reply) => {
      const bundle = await bundles.create(request.body);
      return reply.code(201).header('location', `/bundles/${bundle.id}`).send(bundle);
    },
  );

  app.get(
    '/bundles',
    {
      config: { access: 'read' },
      schema: {
        operationId: 'listBundles',
        tags: ['bundles'],
        summary: 'List managed bundles',
        response: { 200: z.array(Bundle) },
      },
    },
    async () => bundles.list(),
  );

  app.get(
    '/bundles/:id',
    {
      config: { access: 'read' },
      schema: {
        operationId: 'getBundle',
        tags: ['bundles'],
        summary: 'A managed bundle: metadata, the containers using it, and its generated config.json',
        params: BundleIdParams,
        response: { 200: BundleDetail, ...errors(400, 404) },
      },
    },
    async (request) => bundles.get(request.params.id),
  );

  app.delete(
    '/bundles/:id',
    {
      config: { access: 'admin' },
      schema: {
        operationId: 'deleteBundle',
        tags: ['bundles'],
        summary: 'Delete a managed bundle and its files; 409 while a container uses it',
        params: BundleIdParams,
        response: { 204: z.null().describe('Deleted'), ...errors(400, 404, 409) },
      },
    },
    async (request, reply) => {
      await bundles.delete(request.params.id);
      return reply.code(204).send(null);
    },
  );

  // Its own context: only this route takes a raw tarball stream instead of JSON.
  await app.register(async (context) => {
    const upload = context.withTypeProvider<ZodTypeProvider>();
    upload.addContentTypeParser(ROOTFS_MEDIA_TYPES, (_request, payload, done) => done(null, payload));
    upload.put(
      '/bundles/:id/rootfs',
      {
        // The tarball is streamed to disk, never parsed as a body: --max-rootfs-bytes bounds it, not bodyLimit.
        config: { access: 'admin' },
        schema: {
          operationId: 'uploadBundleRootfs',
          tags: ['bundles'],
          summary:
            'Stream a tarball (optionally gzip) into the rootfs, extracting safely; a refused upload leaves nothing behind',
          consumes: ROOTFS_MEDIA_TYPES,
          params: BundleIdParams,
          body: z
            .unknown()
            .meta({ type: 'string', format: 'binary' })
            .describe('A tar archive, plain or gzip-compressed'),
          response: { 200: RootfsUploadResult, ...errors(400, 404, 409, 413) },
        },
      },
      async (request) => {
        const body = request.body;
        if (!isStream(body)) {
          throw new InvalidInputError(
            'rootfs_not_a_tarball',
            `send the rootfs as a tar archive: Content-Type: ${ROOTFS_MEDIA_TYPES.join(' or ')}`,
          );
        }
        const length = Number(request.headers['content-length']);
        return bundles.uploadRootfs(request.params.id, body, Number.isFinite(length) ? length : undefined);
      },
    );
  });
};

function isStream(body: unknown): body is Readable {
  return typeof body === 'object' && body !== null && typeof (body as Readable).pipe === 'function';
}

export default bundleRoutes;
