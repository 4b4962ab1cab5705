import { findImage, imageDefaultsOf } from '../translate/images.js';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { resolveUserInRootfs } from '../../bundles/rootfs-users.js';
import { mountsOf, volumeRequestsOf, type HostConfigInput } from './host-config.js';
import type { VolumeService } from '../../bundles/volume-service.js';
import type { BundleService } from '../../bundles/bundle-service.js';
import type { ContainerCreation } from '../../creation/container-creation.js';
import { NotFoundError } from '../../errors.js';
import type { Bundle } from '../../schemas/bundle.js';
import { CreateContainerRequest } from '../../schemas/bundle.js';
import { DockerError, notImplemented } from '../docker-errors.js';
import { networkRequestOf } from './networks.js';
import { dockerIdOf } from '../docker-ids.js';

export interface CreateBody {
  Image?: unknown;
  Cmd?: unknown;
  Entrypoint?: unknown;
  Env?: unknown;
  WorkingDir?: unknown;
  User?: unknown;
  Labels?: unknown;
  Hostname?: unknown;
  StopSignal?: unknown;
  StopTimeout?: unknown;
  Tty?: unknown;
  OpenStdin?: unknown;
  Volumes?: unknown;
  NetworkingConfig?: { EndpointsConfig?: unknown };
  HostConfig?: HostConfigInput & {
    Memory?: unknown;
    NanoCpus?: unknown;
    PidsLimit?: unknown;
    Init?: unknown;
    RestartPolicy?: { Name?: unknown; MaximumRetryCount?: unknown };
    AutoRemove?: unknown;
    NetworkMode?: unknown;
    PortBindings?: unknown;
    ReadonlyRootfs?: unknown;
  };
}

export const stringList = (value: unknown): string[] | undefined =>
  Array.isArray(value) ? value.map(String) : typeof value === 'string' && value !== '' ? [value] : undefined;
export const nonEmpty = (value: unknown): string | undefined =>
  typeof value === 'string' && value !== '' ? value : undefined;
export const positive = (value: unknown): number | undefined =>
  typeof value === 'number' && value > 0 ? value : undefined;

/**
 * `POST /containers/create` → the native create with `spec` + `rootfsFrom`, as runc id `runcId` (the Docker
 * name, or the id docker-names.ts chose for it; a random one for a container without a name); answers the id.
 */
export async function createFromImage(
  bundles: BundleService,
  creation: ContainerCreation,
  runcId: string | undefined,
  body: CreateBody,
  defaultNetwork?: string,
  volumes?: VolumeService,
): Promise<{ id: string }> {
  if (typeof body.Image !== 'string' || body.Image === '')
    throw new DockerError(400, 'config.Image is required');
  // -t: runc's own pty, held by conmon (attach, resize); -i needs it, since only a terminal container has a stdin.
  if (body.OpenStdin === true && body.Tty !== true) {
    throw notImplemented(
      'stdin for a container without a TTY (docker run -i without -t)',
      'runcd gives stdin to terminal containers: add -t, or pipe the input through docker exec -i',
    );
  }
  let image: Bundle;
  try {
    image = findImage(bundles, body.Image);
  } catch (error) {
    if (error instanceof DockerError && error.status === 404) {
      throw new DockerError(
        404,
        `No such image: ${body.Image} (runcd cannot pull; bring it in with docker import)`,
      );
    }
    throw error;
  }
  const host = body.HostConfig ?? {};
  // Before anything is made: an option runcd cannot honour refuses the create, never half of it.
  const mounts = mountsOf(host, body.Volumes);
  const volumeRequests = volumeRequestsOf(host);
  if (volumeRequests.length > 0 && !volumes) {
    throw notImplemented('named volumes', 'this Docker listener was built without the volume service');
  }
  const merged = mergeWithImage(image, body);
  const withUser = merged.user === undefined ? merged : { ...merged, user: await userOf(image, merged.user) };
  const process = body.Tty === true ? { ...withUser, terminal: true } : withUser;
  const id = runcId ?? `runcd_${randomBytes(6).toString('hex')}`;
  const policy = nonEmpty(host.RestartPolicy?.Name);
  const restartPolicy =
    policy === undefined || policy === 'no'
      ? undefined
      : policy === 'on-failure'
        ? {
            name: 'on-failure',
            ...(positive(host.RestartPolicy?.MaximumRetryCount)
              ? { maxRetries: host.RestartPolicy?.MaximumRetryCount }
              : {}),
          }
        : { name: policy };
  const memory = positive(host.Memory);
  const nanoCpus = positive(host.NanoCpus);
  const pids = positive(host.PidsLimit);
  const resources = {
    ...(memory ? { memoryBytes: memory } : {}),
    ...(nanoCpus ? { cpus: nanoCpus / 1e9 } : {}),
    ...(pids ? { pidsLimit: pids } : {}),
  };
  const labels =
    body.Labels && typeof body.Labels === 'object' ? (body.Labels as Record<string, string>) : undefined;
  // As Docker does, a volume named by a create that does not exist yet is made now (and kept if the create fails).
  for (const wanted of volumeRequests) {
    const volume = await volumes!.create(wanted.name);
    mounts.push({
      destination: wanted.destination,
      source: volume.path,
      type: 'bind',
      readonly: wanted.readonly,
    });
  }
  const request = {
    id,
    rootfsFrom: image.id,
    spec: {
      process,
      // Docker's container writes to a layer of its own over the image (the bundle service mounts it);
      // `--read-only` runs it on the image's rootfs as it is.
      readonlyRootfs: host.ReadonlyRootfs === true,
      ...(nonEmpty(body.Hostname) ? { hostname: body.Hostname } : {}),
      ...(Object.keys(resources).length > 0 ? { resources } : {}),
      ...(mounts.length > 0 ? { mounts } : {}),
      ...(host.Init === true ? { init: true } : {}),
    },
    ...(labels && Object.keys(labels).length > 0 ? { labels } : {}),
    ...(restartPolicy ? { restartPolicy } : {}),
    ...(nonEmpty(body.StopSignal) ? { stopSignal: body.StopSignal } : {}),
    ...(typeof body.StopTimeout === 'number' ? { stopTimeout: body.StopTimeout } : {}),
    // `docker run --rm`: a property of the container, so a restarted runcd still removes it.
    ...(host.AutoRemove === true ? { autoRemove: true } : {}),
    ...networkRequestOf(
      host.NetworkMode,
      host.PortBindings,
      defaultNetwork,
      body.NetworkingConfig?.EndpointsConfig,
      dockerIdOf(id).slice(0, 12),
      nonEmpty(body.Hostname),
    ),
  };
  const parsed = CreateContainerRequest.safeParse(request);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DockerError(
      400,
      `invalid container config: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}`,
    );
  }
  try {
    await creation.create(parsed.data);
  } catch (error) {
    // A 404 at create makes the docker CLI pull the image and try again; runcd cannot pull, so a missing
    // network would end in a pull error that never names it.
    if (error instanceof NotFoundError && error.code === 'network_not_found')
      throw new DockerError(400, error.message);
    if (error instanceof NotFoundError) throw new DockerError(404, error.message);
    throw error;
  }
  return { id };
}

/**
 * The container's process from its create body over the image's defaults, by Docker's rules: an Entrypoint of
 * the caller replaces the image's and drops the image's Cmd; otherwise the caller's Cmd (or the image's) follows
 * the image's Entrypoint. `--entrypoint ""` (`[""]`) clears it. Env merges by key; WorkingDir and User override
 * (the user as given: userOf resolves it).
 */
export function mergeWithImage(
  image: Bundle,
  body: CreateBody,
): { args: string[]; env?: string[]; cwd?: string; user?: string } {
  const defaults = imageDefaultsOf(image);
  let entrypoint = stringList(body.Entrypoint);
  let cmd = stringList(body.Cmd);
  if (entrypoint === undefined || entrypoint.length === 0) {
    if (cmd === undefined || cmd.length === 0) cmd = defaults.Cmd ?? undefined;
    if (entrypoint === undefined) entrypoint = defaults.Entrypoint ?? undefined;
  }
  if (entrypoint?.length === 1 && entrypoint[0] === '') entrypoint = [];
  const args = [...(entrypoint ?? []), ...(cmd ?? [])];
  if (args.length === 0) throw new DockerError(400, 'No command specified');
  const env = new Map<string, string>();
  for (const entry of [...(defaults.Env ?? []), ...(stringList(body.Env) ?? [])]) {
    // `docker run -e VAR` with VAR unset in the client's environment arrives as a bare `VAR`: Docker drops it.
    const equals = entry.indexOf('=');
    if (equals === -1) continue;
    env.set(entry.slice(0, equals), entry);
  }
  const cwd = nonEmpty(body.WorkingDir) ?? nonEmpty(defaults.WorkingDir);
  const user = nonEmpty(body.User) ?? nonEmpty(defaults.User);
  return {
    args,
    ...(env.size > 0 ? { env: [...env.values()] } : {}),
    ...(cwd !== undefined ? { cwd } : {}),
    ...(user !== undefined ? { user } : {}),
  };
}

/** `--user` (or the image's User) as uid:gid, resolved in the image's rootfs as Docker does. */
async function userOf(image: Bundle, spec: string): Promise<string> {
  const resolved = await resolveUserInRootfs(join(image.path, 'rootfs'), spec);
  if (!resolved.ok) throw new DockerError(400, resolved.reason);
  return `${resolved.uid}:${resolved.gid}`;
}
