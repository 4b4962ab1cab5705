/**
 * Typed domain errors and their single mapping to RFC 9457 problem+json. Every layer throws these; only
 * `toProblem` decides which HTTP status a failure becomes, so every endpoint answers a failure the same way.
 */

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  containerId?: string;
  instance?: string;
}

export abstract class DomainError extends Error {
  abstract readonly status: number;
  abstract readonly title: string;
  constructor(
    readonly code: string,
    message: string,
    readonly containerId?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class NotFoundError extends DomainError {
  readonly status = 404;
  readonly title = 'Not Found';
}

export class ConflictError extends DomainError {
  readonly status = 409;
  readonly title = 'Conflict';
}

export class InvalidInputError extends DomainError {
  readonly status = 400;
  readonly title = 'Bad Request';
}

export class PolicyDeniedError extends DomainError {
  readonly status = 403;
  readonly title = 'Forbidden';
}

/** The runtime refused what the caller asked for (e.g. `runc create` rejected the bundle's config). */
export class RuntimeRejectedError extends DomainError {
  readonly status = 422;
  readonly title = 'Unprocessable Content';
}

/** The runtime failed for a reason that is not the caller's (a crash, a timeout, a missing binary). */
export class RuntimeFailureError extends DomainError {
  readonly status = 500;
  readonly title = 'Runtime Failure';
}

export class TimeoutError extends DomainError {
  readonly status = 504;
  readonly title = 'Gateway Timeout';
}

export function containerNotFound(id: string): NotFoundError {
  return new NotFoundError('container_not_found', `container "${id}" does not exist`, id);
}

const PROBLEM_TYPE_BASE = 'https://runcd.dev/problems/';

export function toProblem(error: DomainError): Problem {
  const problem: Problem = {
    type: PROBLEM_TYPE_BASE + error.code,
    title: error.title,
    status: error.status,
    detail: error.message,
    code: error.code,
  };
  if (error.containerId !== undefined) problem.containerId = error.containerId;
  return problem;
}

export function problemFor(status: number, code: string, title: string, detail: string): Problem {
  return { type: PROBLEM_TYPE_BASE + code, title, status, detail, code };
}
