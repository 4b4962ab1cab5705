import { readFileSync } from 'node:fs';

/**
 * The same container lifecycle through three front ends: runcd's REST API, the runc CLI itself and Podman's
 * libpod REST API. Every step throws when the front end answers anything but success, so a benchmark can never
 * time a failure.
 */

export type BundleKind = 'sleep' | 'graceful';

/** An init that runs until SIGKILL (busybox sleep as PID 1 ignores SIGTERM) or one that exits 0 on SIGTERM. */
export const BUNDLE_ARGS: Record<BundleKind, string[]> = {
  sleep: ['sleep', '999999'],
  graceful: ['sh', '-c', 'trap "exit 0" TERM; sleep 999999 & wait'],
};

export interface LifecycleDriver {
  readonly name: string;
  create(id: string, kind?: BundleKind): Promise<void>;
  start(id: string): Promise<void>;
  state(id: string): Promise<void>;
  /** The host pid of the container's init. */
  pid(id: string): Promise<number>;
  list(): Promise<number>;
  /** Runs `true` in the container and checks its exit code. */
  exec(id: string): Promise<void>;
  /** SIGKILL. */
  kill(id: string): Promise<void>;
  /** Resolves with the exit code once the container has stopped (null: this front end cannot know it). */
  waitStopped(id: string): Promise<number | null>;
  /** SIGTERM, then waits until the container has stopped (the graceful bundle exits 0 at once). */
  stop(id: string): Promise<void>;
  delete(id: string): Promise<void>;
  /** Best-effort forced removal after a failed step. */
  remove(id: string): Promise<void>;
}

export class BenchError extends Error {
  override name = 'BenchError';
}

/**
 * Resolves once process `pid` has a SIGTERM handler (bit 15 of SigCgt in /proc/PID/status): the graceful
 * bundle's shell is then past its `trap`, and a stop cannot race its start-up (as PID 1 it would ignore SIGTERM).
 */
export async function untilHandlesSigterm(pid: number, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const caught = /^SigCgt:\s+([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '0';
    if ((BigInt(`0x${caught}`) >> 14n) & 1n) return;
    if (performance.now() > deadline) throw new BenchError(`pid ${pid} never installed a SIGTERM handler`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** The steps of one full lifecycle (B1), in order. */
export const LIFECYCLE_STEPS = ['create', 'start', 'state', 'exec', 'kill', 'wait', 'delete'] as const;
export type LifecycleStep = (typeof LIFECYCLE_STEPS)[number];

/** One full lifecycle; `onStep` gets each step's duration in ms. */
export async function runLifecycle(
  driver: LifecycleDriver,
  id: string,
  onStep: (step: LifecycleStep, ms: number) => void = () => undefined,
): Promise<number> {
  const started = performance.now();
  let last = started;
  const mark = (step: LifecycleStep) => {
    const now = performance.now();
    onStep(step, now - last);
    last = now;
  };
  await driver.create(id);
  mark('create');
  await driver.start(id);
  mark('start');
  await driver.state(id);
  mark('state');
  await driver.exec(id);
  mark('exec');
  await driver.kill(id);
  mark('kill');
  const exitCode = await driver.waitStopped(id);
  mark('wait');
  if (exitCode !== null && exitCode !== 137)
    throw new BenchError(`${driver.name}: ${id} exited with ${exitCode}, expected 137 (SIGKILL)`);
  await driver.delete(id);
  mark('delete');
  return performance.now() - started;
}
