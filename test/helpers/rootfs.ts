import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { Daemon } from '../../src/daemon.js';
import type { Sandbox } from './sandbox.js';
import { REPO_ROOT, RUNTIME_BINARY } from './sandbox.js';

/** A busybox rootfs directory (static busybox, applets as symlinks in /bin), made where the test says. */
export function makeBusyboxRootfs(parent: string): string {
  const bundle = join(parent, 'busybox-bundle');
  execFileSync(join(REPO_ROOT, 'scripts', 'make-busybox-bundle.sh'), [bundle], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, RUNTIME: RUNTIME_BINARY },
  });
  return join(bundle, 'rootfs');
}

/** `tar -C DIR -c .` (gzip-compressed with `gzip: true`), as a caller would build an upload. */
export function tarball(dir: string, options: { gzip?: boolean } = {}): Buffer {
  return execFileSync('tar', ['-C', dir, options.gzip ? '-czf' : '-cf', '-', '.'], {
    maxBuffer: 256 * 1024 * 1024,
  });
}

/** PUT /bundles/ID/rootfs with a raw body, as curl --data-binary would send it. */
export async function uploadRootfs(
  daemon: Daemon,
  id: string,
  body: Buffer,
  contentType = 'application/x-tar',
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await daemon.app.inject({
    method: 'PUT',
    url: `/bundles/${id}/rootfs`,
    headers: { 'content-type': contentType },
    payload: body,
  });
  return { status: response.statusCode, body: response.json() };
}

export function importRoot(sandbox: Sandbox): string {
  return join(sandbox.dir, 'import');
}
