import { PassThrough } from 'node:stream';
import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { BundleService } from '../src/bundles/bundle-service.js';
import type { ImagePuller } from '../src/bundles/image-puller.js';
import type { ImagePusher } from '../src/bundles/image-pusher.js';
import { RegistryPullError } from '../src/bundles/registry-access.js';
import { DockerError } from '../src/docker/docker-errors.js';
import { finalStatus, pullReferenceOf, runPull, type Message } from '../src/docker/handlers/image-pull.js';
import { pushTargetOf, runPush } from '../src/docker/handlers/image-push.js';
import { findImage } from '../src/docker/translate/images.js';
import { DomainError, ImageTransferError, NotImplementedError } from '../src/errors.js';
import { ProblemSchema } from '../src/schemas/common.js';
import { ImageProgress, PullImageBody, PushImageBody } from '../src/schemas/image.js';
import { abortOnClose } from './streaming.js';

/**
 * Registries on the native API: a pull or push answers NDJSON of Docker's progress messages (layer bytes as
 * Docker's pull reports them), ending with a line that has `image` (name, bundle id, digest) or `error`. The
 * registry is asked first, so an unknown image, refused credentials or an unreachable registry is a
 * problem+json with its status (404, 403, 502, 504) before any line. Closing the connection cancels: skopeo and
 * umoci are killed, and nothing half-pulled stays. The images are the Docker socket's (one store, one
 * single-flight), so a pulled image runs there as `docker run NAME` and here as `POST /containers {bundleId}`.
 */

export interface ImageRoutesOptions {
  images?: { bundles: BundleService; puller: ImagePuller; pusher: ImagePusher } | undefined;
}

const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((status) => [status, ProblemSchema]));

const progressResponse = (what: string) => ({
  description: `One ImageProgress per line: Docker's ${what} messages, then the result (or the error)`,
  content: { 'application/x-ndjson': { schema: ImageProgress } },
});

const imageRoutes: FastifyPluginAsyncZod<ImageRoutesOptions> = async (app, { images }) => {
  const need = () => {
    if (!images) {
      throw new NotImplementedError(
        'images_unavailable',
        'this daemon was started without skopeo and umoci (apt-get install -y skopeo umoci)',
      );
    }
    return images;
  };

  app.post(
    '/images/pull',
    {
      config: { access: 'admin' },
      schema: {
        operationId: 'pullImage',
        tags: ['images'],
        summary:
          'Pull an image from a registry into a managed bundle (docker pull); NDJSON progress, cancelled by closing the connection',
        body: PullImageBody,
        response: { 200: progressResponse('pull'), ...errors(400, 403, 404, 409, 413, 502, 504) },
      },
    },
    async (request, reply) => {
      const { bundles, puller } = need();
      const ref = nativeReference(() => pullReferenceOf(request.body.reference, undefined));
      return streamTransfer(reply, async (signal, send) => {
        const outcome = await runPull(bundles, puller, ref, { signal, credentials: request.body.auth }, send);
        for (const status of finalStatus(outcome)) send({ status });
        send({
          image: {
            name: outcome.name,
            bundleId: outcome.bundleId,
            digest: outcome.digest,
            downloaded: !outcome.present,
          },
        });
      });
    },
  );

  app.post(
    '/images/push',
    {
      config: { access: 'admin' },
      schema: {
        operationId: 'pushImage',
        tags: ['images'],
        summary:
          'Push an image runcd has to a registry (docker push), optionally under another reference; NDJSON progress',
        body: PushImageBody,
        response: { 200: progressResponse('push'), ...errors(400, 403, 404, 502, 504) },
      },
    },
    async (request, reply) => {
      const { bundles, pusher } = need();
      const { image: imageName, reference, auth } = request.body;
      const { image, ref } = nativeReference(() => {
        if (reference === undefined) return pushTargetOf(bundles, imageName, undefined);
        const source = findImage(bundles, imageName);
        return { image: source, ref: pullReferenceOf(reference, undefined) };
      });
      if (ref.digest)
        throw new ImageTransferError('image_reference_invalid', `cannot push to a digest (${reference})`);
      return streamTransfer(reply, async (signal, send) => {
        const outcome = await runPush(bundles, pusher, image, ref, { signal, credentials: auth }, send);
        send({ image: { name: outcome.name, bundleId: image.id, digest: outcome.digest } });
      });
    },
  );
};

/** A reference the Docker surface's parser refuses (a Docker Hub name, a bad tag) is a 400 here. */
function nativeReference<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw nativeImageError(error);
  }
}

/**
 * The answer starts with the first message (the registry has answered by then); a failure before it is thrown
 * (problem+json with its status), after it is the last line, `error` with the native code.
 */
async function streamTransfer(
  reply: FastifyReply,
  work: (signal: AbortSignal, send: (message: Message) => void) => Promise<void>,
): Promise<FastifyReply> {
  const controller = abortOnClose(reply);
  const body = new PassThrough();
  let started = false;
  let markStarted!: () => void;
  const firstMessage = new Promise<void>((resolve) => (markStarted = resolve));
  const send = (message: Message) => {
    body.write(`${JSON.stringify(message)}\n`);
    if (!started) {
      started = true;
      markStarted();
    }
  };
  const done = work(controller.signal, send).then(
    () => body.end(),
    (error: unknown) => {
      if (!started) throw nativeImageError(error);
      const answer = nativeImageError(error);
      const message = answer instanceof Error ? answer.message : String(answer);
      const code = answer instanceof DomainError ? answer.code : undefined;
      body.end(
        `${JSON.stringify({ error: message, errorDetail: { message, ...(code ? { code } : {}) } })}\n`,
      );
    },
  );
  await Promise.race([firstMessage, done]);
  return reply.type('application/x-ndjson').header('cache-control', 'no-cache').send(body);
}

type TransferCode = ConstructorParameters<typeof ImageTransferError>[0];

const REASON_CODES: Readonly<Record<RegistryPullError['reason'], TransferCode>> = {
  reference: 'image_reference_invalid',
  credentials: 'registry_denied',
  not_found: 'image_not_found',
  platform: 'image_platform_missing',
  too_large: 'image_layer_too_large',
  cancelled: 'registry_failed',
  timeout: 'registry_timeout',
  unreachable: 'registry_failed',
};

const DOCKER_STATUS_CODES: Readonly<Record<number, TransferCode>> = {
  400: 'image_reference_invalid',
  404: 'image_not_found',
  409: 'image_in_use',
  413: 'image_layer_too_large',
  501: 'image_reference_invalid',
};

function nativeImageError(error: unknown): unknown {
  if (error instanceof RegistryPullError) {
    return new ImageTransferError(REASON_CODES[error.reason], error.message);
  }
  const code = error instanceof DockerError ? DOCKER_STATUS_CODES[error.status] : undefined;
  if (code) return new ImageTransferError(code, (error as Error).message);
  return error;
}

export default imageRoutes;
