import { execFile } from 'node:child_process';
import { join } from 'node:path';
import type { Test } from 'tap';
import { DaemonProcess, type Sandbox } from './sandbox.js';

export interface DockerCliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The real docker CLI of this machine (a client only; no engine), pointed at runcd's Docker socket. Never throws:
 * the tests assert on the exit code and output, as a script would.
 */
export function dockerCli(socket: string, ...args: string[]): Promise<DockerCliResult> {
  return new Promise((resolve) => {
    execFile(
      'docker',
      args,
      { env: { ...process.env, DOCKER_HOST: `unix://${socket}` }, timeout: 120_000 },
      (error, stdout, stderr) => {
        if (error && (error as NodeJS.ErrnoException).code === 'ENOENT') {
          resolve({
            code: -1,
            stdout,
            stderr: 'the docker CLI is not installed on this machine (PATH has no docker)',
          });
          return;
        }
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A runcd child process that also serves the Docker API on a socket in the sandbox; closed at teardown. */
export async function startWithDockerSocket(
  t: Test,
  sandbox: Sandbox,
  extraArgs: string[] = [],
): Promise<{ daemon: DaemonProcess; dockerSocket: string }> {
  const dockerSocket = join(sandbox.dir, 'docker.sock');
  const daemon = new DaemonProcess(sandbox, ['--docker-socket', dockerSocket, ...extraArgs]);
  t.teardown(() => daemon.close());
  await daemon.start();
  return { daemon, dockerSocket };
}
