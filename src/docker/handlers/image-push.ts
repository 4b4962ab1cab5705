import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { BundleService } from '../../bundles/bundle-service.js';
import type { PullReference } from '../../bundles/image-puller.js';
import type { ImagePusher, PushResult } from '../../bundles/image-pusher.js';
import { type PullCredentials, RegistryPullError } from '../../bundles/registry-access.js';
import type { ImageDefaults } from '../../runtime/image-tools.js';
import type { Bundle } from '../../schemas/bundle.js';
import { DockerError } from '../docker-errors.js';
import { findImage, imageDefaultsOf, labelsWithPushedDigest } from '../translate/images.js';
import { credentialsOf, type Message, progressBar, pullReferenceOf } from './image-pull.js';

/**
 * `docker push HOST/NAME[:TAG]` (POST /images/HOST/NAME/push?tag=TAG): the image runcd has under that name is
 * made an OCI image and copied to the registry. The answer holds back until skopeo copies its first blob, so
 * the registry's refusals (credentials, TLS, unreachable) keep their status codes (403, 502, 504) with a message
 * naming the image; from then on it is Docker's JSON progress stream, and a failure there is its last message.
 */

export interface PushOutcome extends PushResult {
  name: string;
  tag: string;
}

/** What to push and where: the image of `NAME:TAG` in runcd, to the registry its name starts with. */
export function pushTargetOf(
  bundles: BundleService,
  name: string,
  tag: string | undefined,
): { image: Bundle; ref: PullReference } {
  if (tag !== undefined && tag.startsWith('sha256:')) {
    throw new DockerError(400, `cannot push a digest (${name}@${tag}): push a tag`);
  }
  let ref: PullReference;
  try {
    ref = pullReferenceOf(name, tag);
  } catch (error) {
    if (error instanceof DockerError && error.status === 501) {
      throw new DockerError(
        501,
        `pushing to Docker Hub ("${name}") is not supported: runcd only contacts the registries images are named after; docker tag the image HOST:PORT/${name.replace(/^(docker\.io\/)?(library\/)?/, '')} and push that`,
      );
    }
    throw error;
  }
  const local = `${ref.repository}:${ref.tag ?? 'latest'}`;
  let image: Bundle;
  try {
    image = findImage(bundles, local);
  } catch {
    throw new DockerError(404, `An image does not exist locally with the tag: ${local}`);
  }
  return { image, ref };
}

export function pushSourceOf(image: Bundle): { rootfs: string; defaults: ImageDefaults } {
  const run = imageDefaultsOf(image);
  return {
    rootfs: `${image.path}/rootfs`,
    defaults: {
      entrypoint: run.Entrypoint ?? undefined,
      cmd: run.Cmd ?? undefined,
      env: run.Env ?? undefined,
      workingDir: run.WorkingDir,
      user: run.User,
      created: image.created,
    },
  };
}

/**
 * A push, whatever the transport: `send` gets Docker's push messages, the first ones only once the registry
 * took the first blob (before that, a failure is thrown, never sent). The image gets the pushed digest as the
 * RepoDigest of that repository.
 */
export async function runPush(
  bundles: BundleService,
  pusher: ImagePusher,
  image: Bundle,
  ref: PullReference,
  controls: { signal: AbortSignal; credentials: PullCredentials | undefined },
  send: (message: Message) => void,
): Promise<PushOutcome> {
  const tag = ref.tag ?? 'latest';
  const shortId = (digest: string) => digest.slice(7, 19);
  let pending: Message[] | undefined = [{ status: `The push refers to repository [${ref.repository}]` }];
  const emit = (message: Message) => (pending ? pending.push(message) : send(message));
  const sizes = new Map<string, number>();
  const existing = new Set<string>();
  const result = await pusher.push(pushSourceOf(image), ref, {
    ...controls,
    onPrepared: (layers) => {
      for (const layer of layers) {
        sizes.set(layer.digest, layer.size);
        emit({ status: 'Preparing', progressDetail: {}, id: shortId(layer.digest) });
      }
    },
    onBlob: (digest, exists) => {
      if (pending) {
        for (const message of pending) send(message);
        pending = undefined;
      }
      const total = sizes.get(digest);
      if (total === undefined) return; // the config blob
      if (exists) existing.add(digest);
      if (exists) send({ status: 'Layer already exists', progressDetail: {}, id: shortId(digest) });
      else
        send({
          status: 'Pushing',
          progressDetail: { current: 0, total },
          progress: progressBar(0, total),
          id: shortId(digest),
        });
    },
  });
  if (pending) for (const message of pending) send(message);
  for (const layer of result.layers) {
    if (!existing.has(layer.digest))
      send({ status: 'Pushed', progressDetail: {}, id: shortId(layer.digest) });
  }
  const current = bundles.list().find((bundle) => bundle.id === image.id);
  if (current)
    await bundles.relabel(image.id, labelsWithPushedDigest(current, ref.repository, result.digest));
  send({
    status: `${tag}: digest: ${result.digest}${result.size !== undefined ? ` size: ${result.size}` : ''}`,
  });
  send({
    progressDetail: {},
    aux: { Tag: tag, Digest: result.digest, ...(result.size !== undefined ? { Size: result.size } : {}) },
  });
  return { ...result, name: `${ref.repository}:${tag}`, tag };
}

export async function pushImage(
  request: FastifyRequest,
  reply: FastifyReply,
  bundles: BundleService,
  pusher: ImagePusher,
  name: string,
  tag: string | undefined,
): Promise<void> {
  const { image, ref } = pushTargetOf(bundles, name, tag || undefined);
  const controller = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  let stream: ServerResponse | undefined;
  const send = (message: Message) => {
    if (!stream) {
      reply.hijack();
      stream = reply.raw;
      stream.writeHead(200, { 'content-type': 'application/json' });
    }
    stream.write(`${JSON.stringify(message)}\n`);
  };
  try {
    await runPush(
      bundles,
      pusher,
      image,
      ref,
      { signal: controller.signal, credentials: credentialsOf(request.headers['x-registry-auth']) },
      send,
    );
    stream?.end();
  } catch (error) {
    const answer =
      error instanceof RegistryPullError
        ? new DockerError(error.status === 499 ? 400 : error.status, error.message)
        : error;
    if (!stream) throw answer;
    const message = answer instanceof Error ? answer.message : `pushing ${ref.repository} failed`;
    send({ errorDetail: { message }, error: message });
    stream.end();
  }
}
