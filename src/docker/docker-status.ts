import { ERROR_CATALOG, type ErrorCode, type ErrorKind } from '../error-catalog.js';
import { DomainError } from '../errors.js';
import { DockerError } from './docker-errors.js';
import { dockerIdOf } from './docker-ids.js';

/**
 * Docker's answer for each of runcd's error codes: the native operation decides (it is the one that knows the
 * state), the Docker surface only translates. Where Docker answers differently from runcd for the same failure
 * of one operation (start of a running container is Docker's 304 "not modified", runcd's 409), the per-operation
 * table says so; everything else follows the code's kind.
 */

export type DockerOperation = 'start' | 'stop' | 'kill' | 'remove' | 'pause' | 'unpause' | 'restart' | 'exec';

export interface DockerAnswer {
  status: number;
  /** Docker's own words where clients (or their users) read them; runcd's message otherwise. */
  message?: (dockerId: string, runcdMessage: string) => string;
}

const BY_KIND: Readonly<Record<ErrorKind, number>> = {
  invalid_input: 400,
  malformed_request: 400,
  unauthorized: 401,
  forbidden: 403,
  policy_denied: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  too_large: 413,
  unsupported_media_type: 415,
  // The runtime refused a valid request: Docker has no 422 and reports such failures as 500.
  runtime_rejected: 500,
  rate_limited: 429,
  runtime_failure: 500,
  not_implemented: 501,
  upgrade_required: 426,
  internal: 500,
  busy: 503,
  bad_gateway: 502,
  timeout: 504,
};

const NOT_MODIFIED_ANSWER: DockerAnswer = { status: 304 };
const notRunning = (verb: string): DockerAnswer => ({
  status: 409,
  message: (id) => `Cannot ${verb} container: ${id}: container ${id} is not running`,
});

export const DOCKER_OPERATION_ANSWERS: Readonly<
  Record<DockerOperation, Partial<Record<ErrorCode, DockerAnswer>>>
> = {
  start: { container_already_running: NOT_MODIFIED_ANSWER, container_paused: NOT_MODIFIED_ANSWER },
  stop: {},
  kill: { container_not_running: notRunning('kill'), container_stopped: notRunning('kill') },
  remove: {
    container_not_stopped: {
      status: 409,
      message: (id, runcd) =>
        `You cannot remove a ${/: (\w+)$/.exec(runcd)?.[1] ?? 'running'} container ${id}. Stop the container before attempting removal or force remove`,
    },
  },
  pause: {
    container_paused: { status: 409, message: (id) => `Container ${id} is already paused` },
    container_not_running: { status: 409, message: (id) => `Container ${id} is not running` },
    container_stopped: { status: 409, message: (id) => `Container ${id} is not running` },
  },
  unpause: { container_not_paused: { status: 409, message: (id) => `Container ${id} is not paused` } },
  restart: {},
  exec: {
    container_not_running: { status: 409, message: (id) => `container ${id} is not running` },
    container_stopped: { status: 409, message: (id) => `container ${id} is not running` },
    container_paused: {
      status: 409,
      message: (id) => `Container ${id} is paused, unpause the container before exec`,
    },
  },
};

/** Docker's status and message for a runcd error, in the operation it happened in (or none). */
export function dockerAnswerFor(
  error: DomainError,
  operation?: DockerOperation,
  dockerId?: string,
): { status: number; message: string } {
  const special = operation ? DOCKER_OPERATION_ANSWERS[operation][error.code] : undefined;
  if (special) {
    return {
      status: special.status,
      message: special.message
        ? special.message(dockerId ?? error.containerId ?? '', error.message)
        : error.message,
    };
  }
  return { status: BY_KIND[ERROR_CATALOG[error.code].kind], message: error.message };
}

export const NOT_MODIFIED = Symbol('not modified');

/**
 * Runs a native operation for a Docker route: the operation decides (it knows the state), and its refusal is
 * translated through Docker's table for that operation, where a 304 is an answer rather than an error.
 */
export async function asDocker<T>(
  operation: DockerOperation,
  id: string,
  run: () => Promise<T>,
): Promise<T | typeof NOT_MODIFIED> {
  try {
    return await run();
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    const answer = dockerAnswerFor(error, operation, dockerIdOf(id));
    if (answer.status === 304) return NOT_MODIFIED;
    throw new DockerError(answer.status, answer.message);
  }
}
