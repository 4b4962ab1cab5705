import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import type { Test } from 'tap';

/**
 * Debian's `docker-registry` (the CNCF distribution registry) on a free loopback port, with its own config and
 * storage directory in the test's sandbox; killed at teardown, whatever the test did.
 */
export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  dir: string;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export interface RegistryOptions {
  /** Serve TLS with this certificate and key (PEM files). */
  tls?: { cert: string; key: string };
  /** htpasswd file (bcrypt) for basic authentication. */
  htpasswd?: string;
}

export async function startRegistry(
  t: Test,
  dir: string,
  options: RegistryOptions = {},
): Promise<TestRegistry> {
  mkdirSync(join(dir, 'storage'), { recursive: true });
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const config = join(dir, 'config.yml');
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'storage')}`,
      'http:',
      `  addr: ${host}`,
      ...(options.tls
        ? ['  tls:', `    certificate: ${options.tls.cert}`, `    key: ${options.tls.key}`]
        : []),
      ...(options.htpasswd
        ? ['auth:', '  htpasswd:', '    realm: runcd-test', `    path: ${options.htpasswd}`]
        : []),
      '',
    ].join('\n'),
  );
  let output = '';
  const child: ChildProcess = spawn('docker-registry', ['serve', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  );
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      if (options.tls) {
        // The registry answers once its TLS listener is up; the test's CA is not this process's, so only connect.
        await new Promise<void>((resolve, reject) => {
          const socket = connect(port, '127.0.0.1', () => {
            socket.destroy();
            resolve();
          });
          socket.on('error', reject);
        });
        return { host, dir };
      }
      const response = await fetch(`http://${host}/v2/`);
      if (response.status === 200) return { host, dir };
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`docker-registry did not start on ${host}: ${output}`);
}

/**
 * Pushes image `latest` of an OCI layout to the registry as `REPO:TAG`: plain HTTP, or TLS verified against the
 * CAs in `certDir` with `creds` (USER:PASSWORD).
 */
export function seed(
  registry: TestRegistry,
  layout: string,
  repoTag: string,
  secure?: { certDir: string; creds: string },
): void {
  execFileSync(
    'skopeo',
    [
      '--insecure-policy',
      'copy',
      '--quiet',
      ...(secure
        ? ['--dest-cert-dir', secure.certDir, '--dest-creds', secure.creds]
        : ['--dest-tls-verify=false']),
      `oci:${layout}:latest`,
      `docker://${registry.host}/${repoTag}`,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
}
