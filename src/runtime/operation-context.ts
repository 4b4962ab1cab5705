import { AsyncLocalStorage } from 'node:async_hooks';
import type { Invocation } from './process-runner.js';

/**
 * One caller-visible operation (an HTTP request, in practice). ProcessRunner records every process it runs into
 * the operation it runs under, so the audit trail can name the runtime argv and exit status of each request
 * without threading a parameter through the lifecycle layer; and an operation that already got a runtime slot
 * is never refused one later, so overload can fail a request before it starts but never half-way through it.
 */
export class OperationContext {
  readonly invocations: Invocation[] = [];
  /** Set once the operation has been let through the runtime queue. */
  admitted = false;
}

const storage = new AsyncLocalStorage<OperationContext>();

export function runInOperation<T>(operation: OperationContext, fn: () => T): T {
  return storage.run(operation, fn);
}

export function currentOperation(): OperationContext | undefined {
  return storage.getStore();
}
