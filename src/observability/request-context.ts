import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The request a piece of work runs for. The HTTP layer enters it around each request's hooks and handler; the
 * logger reads it, so a line logged deep in the lifecycle layer (which knows nothing of HTTP) still names the
 * request that caused it. Work runcd does on its own (restarts by policy, exits seen by inotify) has none.
 */
export interface RequestContext {
  requestId: string;
}

const storage = new AsyncLocalStorage<RequestContext>();

export function runInRequest<T>(context: RequestContext, fn: () => T): T {
  return storage.run(context, fn);
}

export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId;
}
