import pino, { type DestinationStream, type Logger } from 'pino';
import { currentRequestId } from './request-context.js';

/** The key fastify binds the request id to on `request.log`; lifecycle lines get the same key. */
export const REQUEST_ID_LOG_KEY = 'reqId';

/**
 * Log paths that could ever hold a secret; pino replaces them wherever they appear. Bearer tokens travel only in
 * the Authorization header and are shown once by `runcd token create`; no other code path logs them, and these
 * paths make sure a header dump or an error carrying the request can never leak one.
 */
export const REDACTED_LOG_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'request.headers.authorization',
  'err.headers.authorization',
  '*.authorization',
  '*.headers.authorization',
  'token.secret',
  '*.secret',
  'secret',
];

export interface LoggerOptions {
  level: string;
  /** Where JSON lines go; stdout when absent (journald picks it up under systemd). */
  destination?: DestinationStream;
}

/**
 * runcd's one pino logger. Every line logged while a request is being served carries that request's id: lines
 * from `request.log` have it as a binding already, and any other logger (the lifecycle's, the audit's) gets it from
 * the request context, so one `grep` of the id shows everything a request did.
 */
export function createLogger(options: LoggerOptions): Logger {
  const boundRequestId = new WeakMap<object, boolean>();
  const hasRequestIdBinding = (logger: Logger): boolean => {
    let known = boundRequestId.get(logger);
    if (known === undefined) {
      known = REQUEST_ID_LOG_KEY in logger.bindings();
      boundRequestId.set(logger, known);
    }
    return known;
  };
  const settings: pino.LoggerOptions = {
    level: options.level,
    base: { service: 'runcd' },
    redact: { paths: REDACTED_LOG_PATHS, censor: '[redacted]' },
    mixin(_object, _level, logger) {
      const requestId = currentRequestId();
      if (requestId === undefined || hasRequestIdBinding(logger as Logger)) return {};
      return { [REQUEST_ID_LOG_KEY]: requestId };
    },
  };
  return options.destination ? pino(settings, options.destination) : pino(settings);
}
