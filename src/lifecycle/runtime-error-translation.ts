import {
  ConflictError,
  DomainError,
  InvalidInputError,
  NotFoundError,
  RuntimeFailureError,
  RuntimeRejectedError,
  TimeoutError,
} from '../errors.js';
import { RuntimeError } from '../runtime/runc.js';

/**
 * Turns a runtime failure into the domain error a caller sees; domain errors pass through unchanged. runc's own
 * words (`runtimeMessage`) stay in the message: they are what a runc user recognizes.
 */
export function translateRuntimeError(error: unknown, id: string, command: string): DomainError {
  if (error instanceof DomainError) return error;
  if (!(error instanceof RuntimeError)) {
    return new RuntimeFailureError('runtime_failed', `${command} failed: ${(error as Error).message}`, id);
  }
  const message = error.runtimeMessage;
  switch (error.kind) {
    case 'not_found':
      return new NotFoundError('container_not_found', `container "${id}" does not exist in the runtime`, id);
    case 'already_running':
      return new ConflictError('container_already_running', message, id);
    case 'stopped':
      return new ConflictError('container_stopped', message, id);
    case 'not_running':
      return new ConflictError('container_not_running', message, id);
    case 'paused':
      return new ConflictError('container_paused', message, id);
    case 'not_stopped':
      return new ConflictError('container_not_stopped', message, id);
    case 'executable_not_found':
      return new InvalidInputError('executable_not_found', message, id);
    case 'not_executable':
    case 'invalid_cwd':
    case 'invalid_user':
      return new InvalidInputError(error.kind, message, id);
    case 'died':
      return new ConflictError(
        'container_stopped',
        `the container stopped during ${command}: ${message}`,
        id,
      );
    case 'timeout':
      return new TimeoutError('runtime_timeout', message, id);
    default:
      return command === 'create'
        ? new RuntimeRejectedError(
            'runtime_create_failed',
            `runtime could not create the container: ${message}`,
            id,
          )
        : new RuntimeFailureError('runtime_failed', `${command} failed: ${message}`, id);
  }
}

/** runc's answer for a container it does not have: a step that removes the container may ignore it. */
export function isNotFound(error: unknown): boolean {
  return error instanceof RuntimeError && error.kind === 'not_found';
}
