import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { BundleService } from '../../bundles/bundle-service.js';
import {
  type ImagePuller,
  type PullCredentials,
  type PullReference,
  RegistryPullError,
  referenceString,
} from '../../bundles/image-puller.js';
import { DockerError, notImplemented } from '../docker-errors.js';
import {
  IMAGE_DIGEST_LABEL,
  findImage,
  imageDigestsOf,
  imageName,
  imageNamesOf,
  labelsWithNames,
} from '../translate/images.js';
import { commitImage, refuseIfInUse } from './image-routes.js';

/**
 * `docker pull` (POST /images/create?fromImage=NAME&tag=TAG): the registry is asked for the manifest before the
 * answer starts, so an unknown image, tag or registry keeps its status code (404, 401, 502, 504); from the copy
 * on, the answer is Docker's JSON progress stream (the CLI draws it), and a failure there is its last message.
 */

const HUB_REFUSAL =
  'names without a registry host go to Docker Hub, which runcd does not contact; name a registry (HOST:PORT/NAME[:TAG]), or bring images in with `docker load` (a `docker save` archive) or `docker import` (a rootfs tarball)';

/** `fromImage` and `tag` as the docker CLI sends them (the tag may be a digest). */
export function pullReferenceOf(fromImage: string, tag: string | undefined): PullReference {
  let repository = fromImage;
  let ownTag: string | undefined;
  let digest: string | undefined;
  const at = repository.indexOf('@');
  if (at >= 0) {
    digest = repository.slice(at + 1);
    repository = repository.slice(0, at);
  } else {
    const colon = repository.lastIndexOf(':');
    if (colon > repository.lastIndexOf('/')) {
      ownTag = repository.slice(colon + 1);
      repository = repository.slice(0, colon);
    }
  }
  if (tag) {
    if (tag.startsWith('sha256:')) digest = tag;
    else ownTag = tag;
  }
  const slash = repository.indexOf('/');
  const host = slash > 0 ? repository.slice(0, slash) : '';
  // The docker CLI spells a bare name `docker.io/library/NAME`: Docker Hub, never contacted from runcd.
  if (!host || !(/[.:]/.test(host) || host === 'localhost') || /(^|\.)docker\.io$/i.test(host)) {
    throw notImplemented(`pulling images from Docker Hub ("${fromImage}")`, HUB_REFUSAL);
  }
  if (
    !/^[a-z0-9.-]+(:\d{1,5})?(\/[a-z0-9]+(?:[._-][a-z0-9]+)*)+$/.test(repository) ||
    (ownTag !== undefined && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(ownTag)) ||
    (digest !== undefined && !/^sha256:[a-f0-9]{64}$/.test(digest))
  ) {
    throw new DockerError(400, `invalid reference format: "${fromImage}${tag ? `:${tag}` : ''}"`);
  }
  return { registry: host, repository, tag: digest ? undefined : (ownTag ?? 'latest'), digest };
}

/** `X-Registry-Auth`: base64url JSON `{username, password}` as the docker CLI sends it; `{}` means none. */
export function credentialsOf(header: string | string[] | undefined): PullCredentials | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
  } catch {
    throw new DockerError(400, 'X-Registry-Auth is not base64url-encoded JSON');
  }
  const { username, password } = (parsed ?? {}) as { username?: unknown; password?: unknown };
  if (typeof username !== 'string' || typeof password !== 'string' || username === '') return undefined;
  return { username, password };
}

export type Message = Record<string, unknown>;

/** Docker's own progress string (`[=====>      ]  1.2MB/3.4MB`), for clients that print it rather than draw it. */
export function progressBar(current: number, total: number): string {
  const width = 50;
  const filled = total > 0 ? Math.min(width, Math.floor((current / total) * width)) : 0;
  const bar = `${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? '>' : ''}${' '.repeat(width - filled)}`;
  return `[${bar}] ${humanBytes(current)}/${humanBytes(total)}`;
}

function humanBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes}B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)}${units[unit]}`;
}

/** Where a pull's image went: its name, the bundle that holds it, its registry digest. */
export interface PullOutcome {
  name: string;
  bundleId: string;
  digest: string;
  /** Nothing was downloaded: the image (or one of the same digest) was there. */
  present: boolean;
  /** It was there under this very name: Docker's "Image is up to date". */
  upToDate: boolean;
}

/**
 * A pull into runcd's images, whatever the transport: `send` gets Docker's progress messages (the first one
 * only once the registry answered for the manifest, so an unknown image fails before any message); the caller
 * turns them into the Docker API's JSON stream or the native NDJSON. Errors are thrown, never sent.
 */
export async function runPull(
  bundles: BundleService,
  puller: ImagePuller,
  ref: PullReference,
  controls: { signal: AbortSignal; credentials: PullCredentials | undefined },
  send: (message: Message) => void,
): Promise<PullOutcome> {
  const reference = referenceString(ref);
  // A digest pull is kept under the repository's name with the digest as its RepoDigest, as `<none>` in Docker.
  const name = imageName(ref.digest ? `${ref.repository}:${ref.digest.slice(7, 19)}` : reference).name;
  let layers: string[] = [];
  const shortId = (digest: string) => digest.slice(7, 19);
  const reported = new Map<string, string>();
  const outcome = await puller.pull(
    ref,
    {
      ...controls,
      onProgress: (progress) => {
        for (const layer of progress) {
          const id = shortId(layer.digest);
          if (layer.done) {
            if (reported.get(id) === 'done') continue;
            reported.set(id, 'done');
            send({ status: 'Download complete', progressDetail: {}, id });
          } else if (layer.current > 0) {
            reported.set(id, 'downloading');
            send({
              status: 'Downloading',
              progressDetail: { current: layer.current, total: layer.total },
              progress: progressBar(layer.current, layer.total),
              id,
            });
          }
        }
      },
      onExtracting: () => {
        for (const layer of layers) {
          if (reported.get(shortId(layer)) !== 'done')
            send({ status: 'Download complete', progressDetail: {}, id: shortId(layer) });
          reported.set(shortId(layer), 'done');
          send({ status: 'Extracting', progressDetail: {}, id: shortId(layer) });
        }
      },
    },
    {
      present: async (digest): Promise<PullOutcome | undefined> => {
        const present = bundles.list().find((bundle) => imageDigestsOf(bundle).includes(digest));
        if (!present) return undefined;
        const names = imageNamesOf(present);
        const upToDate = names.includes(name);
        if (!upToDate) {
          await takeNameAway(bundles, name, present.id);
          await bundles.relabel(present.id, labelsWithNames(present, [...names, name]));
        }
        return { name, bundleId: present.id, digest, present: true, upToDate };
      },
      starting: (resolved) => {
        send({
          status: `Pulling from ${ref.repository.slice(ref.registry.length + 1)}`,
          id: ref.tag ?? ref.digest,
        });
        layers = resolved.layers.map((layer) => layer.digest);
        for (const layer of layers)
          send({ status: 'Pulling fs layer', progressDetail: {}, id: shortId(layer) });
      },
      commit: async (image, resolved) => {
        await takeNameAway(bundles, name);
        await commitImage(bundles, { ...image, names: [name] }, { [IMAGE_DIGEST_LABEL]: resolved.digest });
        for (const layer of layers) send({ status: 'Pull complete', progressDetail: {}, id: shortId(layer) });
        const bundle = findImage(bundles, name);
        return { name, bundleId: bundle.id, digest: resolved.digest, present: false, upToDate: false };
      },
    },
  );
  return outcome;
}

/** The last two lines of a pull, as Docker words them. */
export function finalStatus(outcome: PullOutcome): string[] {
  return [
    `Digest: ${outcome.digest}`,
    outcome.upToDate
      ? `Status: Image is up to date for ${outcome.name}`
      : `Status: Downloaded newer image for ${outcome.name}`,
  ];
}

export async function pullImage(
  request: FastifyRequest,
  reply: FastifyReply,
  bundles: BundleService,
  puller: ImagePuller,
  fromImage: string,
  tag: string | undefined,
): Promise<void> {
  const ref = pullReferenceOf(fromImage, tag);
  const reference = referenceString(ref);
  const controller = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  let stream: ServerResponse | undefined;
  const send = (message: Message) => {
    if (!stream) {
      reply.hijack();
      stream = reply.raw;
      // Exactly `application/json`: only then does the CLI draw the messages instead of echoing them.
      stream.writeHead(200, { 'content-type': 'application/json' });
    }
    stream.write(`${JSON.stringify(message)}\n`);
  };
  try {
    const outcome = await runPull(
      bundles,
      puller,
      ref,
      { signal: controller.signal, credentials: credentialsOf(request.headers['x-registry-auth']) },
      send,
    );
    for (const status of finalStatus(outcome)) send({ status });
    stream?.end();
  } catch (error) {
    const answer =
      error instanceof RegistryPullError
        ? new DockerError(error.status === 499 ? 400 : error.status, error.message)
        : error;
    if (!stream) throw answer;
    const message = answer instanceof Error ? answer.message : `pulling ${reference} failed`;
    send({ errorDetail: { message }, error: message });
    stream.end();
  }
}

/**
 * A name moves to another image. Where the old image has other names it keeps them; where that was its only
 * name, it goes (409 while containers use it) when `keepId` names the image that takes the name, and is left to
 * commitImage (which replaces it only once the new image exists) otherwise.
 */
export async function takeNameAway(bundles: BundleService, name: string, keepId?: string): Promise<void> {
  for (const bundle of bundles.list()) {
    if (bundle.id === keepId) continue;
    const names = imageNamesOf(bundle);
    if (!names.includes(name)) continue;
    if (names.length > 1) {
      await bundles.relabel(
        bundle.id,
        labelsWithNames(
          bundle,
          names.filter((other) => other !== name),
        ),
      );
    } else if (keepId !== undefined) {
      refuseIfInUse(bundles, name);
      await bundles.delete(bundle.id);
    }
  }
}
