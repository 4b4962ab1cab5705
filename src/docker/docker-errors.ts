import type { FastifyError } from 'fastify';
import { DomainError } from '../errors.js';
import { dockerAnswerFor } from './docker-status.js';

/** An answer in Docker's own error format, `{"message": ...}`, with the status Docker uses for it. */
export class DockerError extends Error {
  override name = 'DockerError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Every failure on the Docker listener becomes Docker's `{"message"}` body; runcd's own errors keep their status. */
export function dockerErrorFor(error: unknown): { status: number; message: string } {
  if (error instanceof DockerError) return { status: error.status, message: error.message };
  if (error instanceof DomainError) return dockerAnswerFor(error);
  const status = (error as FastifyError).statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    return { status, message: (error as Error).message };
  }
  return { status: 500, message: 'internal error; see the runcd daemon log' };
}

export function notImplemented(what: string, why?: string): DockerError {
  return new DockerError(
    501,
    `runcd does not implement ${what} of the Docker Engine API${why ? `: ${why}` : ''}`,
  );
}
