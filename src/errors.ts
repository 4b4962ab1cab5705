/**
 * Typed domain errors and their single mapping to RFC 9457 problem+json. Every layer throws these; only
 * `toProblem` decides which HTTP status a failure becomes, so every endpoint answers a failure the same way.
 */

import { statusOf, type CodeOfKind, type ErrorCode } from './error-catalog.js';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  containerId?: string;
  instance?: string;
}

export abstract class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly containerId?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** runcd's own HTTP status for this error: the catalog's kind decides, never the class. */
  get status(): number {
    return statusOf(this.code).status;
  }

  get title(): string {
    return statusOf(this.code).title;
  }
}

// One class per kind, so a throw site reads as what happened; each only takes codes of its kind.
export class NotFoundError extends DomainError {
  constructor(code: CodeOfKind<'not_found'>, message: string, containerId?: string) {
    super(code, message, containerId);
  }
}

export class ConflictError extends DomainError {
  constructor(code: CodeOfKind<'conflict'>, message: string, containerId?: string) {
    super(code, message, containerId);
  }
}

export class InvalidInputError extends DomainError {
  constructor(code: CodeOfKind<'invalid_input'>, message: string, containerId?: string) {
    super(code, message, containerId);
  }
}

export class PolicyDeniedError extends DomainError {
  constructor(code: CodeOfKind<'policy_denied' | 'forbidden'>, message: string, containerId?: string) {
    super(code, message, containerId);
  }
}

/** The runtime refused what the caller asked for (e.g. `runc create` rejected the bundle's config). */
export class RuntimeRejectedError extends DomainError {
  constructor(code: CodeOfKind<'runtime_rejected'>, message: string, containerId?: string) {
    super(code, message, containerId);
  }
}

/** The runtime failed for a reason that is not the caller's (a crash, a timeout, a missing binary). */
export class RuntimeFailureError extends DomainError {
  constructor(code: CodeOfKind<'runtime_failure'>, message: string, containerId?: string) {
    super(code, message, containerId);
  }
}

/** What this build or machine cannot do (e.g. interactive sessions without their native binding). */
export class NotImplementedError extends DomainError {
  constructor(code: CodeOfKind<'not_implemented'>, message: string, containerId?: string) {
    super(code, message, containerId);
  }
}

/** A WebSocket route reached by a plain HTTP request. */
export class UpgradeRequiredError extends DomainError {
  constructor(code: CodeOfKind<'upgrade_required'>, message: string) {
    super(code, message);
  }
}

/** A body (an uploaded rootfs) larger than runcd accepts. */
export class ContentTooLargeError extends DomainError {
  constructor(code: CodeOfKind<'too_large'>, message: string, containerId?: string) {
    super(code, message, containerId);
  }
}

export class TimeoutError extends DomainError {
  constructor(code: CodeOfKind<'timeout'>, message: string, containerId?: string) {
    super(code, message, containerId);
  }
}

/** No credentials, or credentials that match no live token. `challenge` becomes the WWW-Authenticate header. */
export class UnauthorizedError extends DomainError {
  constructor(
    code: CodeOfKind<'unauthorized'>,
    message: string,
    readonly challenge: string,
  ) {
    super(code, message);
  }
}

/** Authenticated, but the token's scope is too small for the route (RFC 6750 `insufficient_scope`). */
export class InsufficientScopeError extends DomainError {
  readonly challenge: string;
  constructor(message: string, requiredScope: string) {
    super('insufficient_scope', message);
    this.challenge = `Bearer realm="runcd", error="insufficient_scope", scope="${requiredScope}"`;
  }
}

/** The caller is over its request budget; `retryAfterSeconds` becomes the Retry-After header. */
export class RateLimitedError extends DomainError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super('rate_limited', message);
  }
}

/** Too many runtime processes are running and queued; the caller should retry after `retryAfterSeconds`. */
export class RuntimeBusyError extends DomainError {
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

/**
 * A problem document for a failure found outside the domain (routing, validation, HTTP parsing). The status is
 * the catalog's, except where HTTP itself decides another (431 for over-long headers).
 */
export function problemFor(code: ErrorCode, detail: string, status = statusOf(code).status): Problem {
  const title =
    status === statusOf(code).status ? statusOf(code).title : (HTTP_TITLES[status] ?? 'Client Error');
  return { type: PROBLEM_TYPE_BASE + code, title, status, detail, code };
}

/** Reason phrases for the statuses HTTP parsing can decide on its own. */
const HTTP_TITLES: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  431: 'Request Header Fields Too Large',
};

/** A pull or push the registry (or runcd's images) refused or failed: the native API's answer for it. */
export class ImageTransferError extends DomainError {
  constructor(
    code: CodeOfKind<
      'invalid_input' | 'forbidden' | 'not_found' | 'conflict' | 'too_large' | 'bad_gateway' | 'timeout'
    >,
    message: string,
  ) {
    super(code, message);
  }
}
