import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { Test } from 'tap';
import { DaemonProcess, REPO_ROOT, RUNTIME_BINARY, type Sandbox } from './sandbox.js';

/** Running the command-line tools (runcctl, runc) as a person would, and reading what they left behind. */

export const RUNCCTL = join(REPO_ROOT, 'bin', 'runcctl.js');

export interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command line to completion, whatever its exit code. */
export function run(
  file: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { cwd: options.cwd, env: { ...process.env, ...options.env }, timeout: 60_000, encoding: 'utf8' },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** runcctl against the sandbox's daemon socket. */
export function runcctl(
  sandbox: Sandbox,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
) {
  return run(process.execPath, [RUNCCTL, '--host', `unix://${sandbox.socket}`, ...args], options);
}

/** runc itself, on a root of its own (so its containers never meet runcd's). */
export function runcOn(root: string) {
  return (args: string[], options: { cwd?: string } = {}) =>
    run(RUNTIME_BINARY, [`--root=${root}`, ...args], options);
}

/** Deletes whatever containers runc still has in `root` (teardown). */
export function cleanRuncRoot(root: string): void {
  try {
    const listed = JSON.parse(
      execFileSync(RUNTIME_BINARY, [`--root=${root}`, 'list', '--format', 'json']).toString() || 'null',
    ) as Array<{ id: string }> | null;
    for (const { id } of listed ?? [])
      execFileSync(RUNTIME_BINARY, [`--root=${root}`, 'delete', '--force', id]);
  } catch {
    // nothing left
  }
}

/** A daemon process on the sandbox socket, closed at teardown. */
export async function startDaemon(t: Test, sandbox: Sandbox, args: string[] = []): Promise<DaemonProcess> {
  const daemon = new DaemonProcess(sandbox, args);
  t.teardown(() => daemon.close());
  await daemon.start();
  return daemon;
}
