import type { Logger } from 'pino';

/**
 * The last line of defence, installed once runcd is serving: an exception nothing caught, or a promise rejection
 * nothing handled, is logged (with the error, at error level) and runcd carries on, instead of Node's default of
 * ending the process.
 *
 * Why carrying on is right for this daemon: runcd holds no container. Every container runs under its own conmon,
 * which outlives runcd, and every state transition is committed to SQLite before it is answered; what an escaped
 * error can leave behind is the work of the one callback it came from (one connection, one stream, one timer),
 * and the per-container locks are promises that settle on their own path. Dying, on the other hand, cuts every
 * request and stream in flight, and nothing answers until someone restarts runcd (issue 13: one client pressing
 * Ctrl-C on `docker exec` did that to everyone). If state ever did go wrong, a restart's reconcile is the
 * repair either way; so the trade is a logged, visible error against an outage for every client.
 *
 * Startup is not covered: until the listeners are up, a failure must end runcd with a non-zero status (main()
 * exits 1, and this is installed only after that point), so a service manager sees the daemon did not start.
 */
export function guardProcess(logger: Logger): void {
  process.on('uncaughtException', (error, origin) => {
    logger.error(
      { err: error, origin },
      'uncaught exception; runcd carries on (this is a bug: please report it)',
    );
  });
  process.on('unhandledRejection', (reason) => {
    logger.error(
      { err: reason instanceof Error ? reason : new Error(String(reason)) },
      'unhandled promise rejection; runcd carries on (this is a bug: please report it)',
    );
  });
}
