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

/** A body (an uploaded rootfs) larger than runcd accepts. */
export class ContentTooLargeError extends DomainError {
  readonly status = 413;
  readonly title = 'Content Too Large';
}

export class TimeoutError extends DomainError {
  readonly status = 504;
  readonly title = 'Gateway Timeout';
}

/** No credentials, or credentials that match no live token. `challenge` becomes the WWW-Authenticate header. */
export class UnauthorizedError extends DomainError {
  readonly status = 401;
  readonly title = 'Unauthorized';
  constructor(
    code: string,
    message: string,
    readonly challenge: string,
  ) {
    super(code, message);
  }
}

/** Authenticated, but the token's scope is too small for the route (RFC 6750 `insufficient_scope`). */
export class InsufficientScopeError extends DomainError {
  readonly status = 403;
  readonly title = 'Forbidden';
  readonly challenge: string;
  constructor(message: string, requiredScope: string) {
    super('insufficient_scope', message);
    this.challenge = `Bearer realm="runcd", error="insufficient_scope", scope="${requiredScope}"`;
  }
}

/** The caller is over its request budget; `retryAfterSeconds` becomes the Retry-After header. */
export class RateLimitedError extends DomainError {
  readonly status = 429;
  readonly title = 'Too Many Requests';
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super('rate_limited', message);
  }
}

/** Too many runtime processes are running and queued; the caller should retry after `retryAfterSeconds`. */
export class RuntimeBusyError extends DomainError {
  readonly status = 503;
  readonly title = 'Service Unavailable';
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super('runtime_busy', message);
  }
}

export function containerNotFound(id: string): NotFoundError {
  return new NotFoundError('container_not_found', `container "${id}" does not exist`, id);
}

const PROBLEM_TYPE_BASE = 'https://runcd.dev/problems/';

/** The media type every error is sent as (RFC 9457). */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

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

/** The HTTP headers that belong with an error's problem document (RFC 6750 challenges, Retry-After). */
export function problemHeaders(error: DomainError): Record<string, string> {
  const headers: Record<string, string> = {};
  if (error instanceof UnauthorizedError || error instanceof InsufficientScopeError) {
    headers['www-authenticate'] = error.challenge;
  }
  if (error instanceof RateLimitedError || error instanceof RuntimeBusyError) {
    headers['retry-after'] = String(error.retryAfterSeconds);
  }
  return headers;
}

export function problemFor(status: number, code: string, title: string, detail: string): Problem {
  return { type: PROBLEM_TYPE_BASE + code, title, status, detail, code };
}
