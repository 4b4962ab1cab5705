import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Path lookups inside a rootfs as the container will see them: symlinks are read and resolved relative to the
 * rootfs (an absolute target starts again at the rootfs, `..` stops at it), never followed on the host, so a
 * rootfs whose /bin is a symlink to /etc can never make runcd look at the host's /etc.
 */

const MAX_SYMLINKS = 40;

/** The host path of `path` inside `rootfs` with every symlink resolved in the rootfs; undefined if missing. */
export async function resolveInRootfs(rootfs: string, path: string): Promise<string | undefined> {
  let pending = path.split('/').filter((part) => part !== '' && part !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const host = join(rootfs, ...resolved, part);
    const info = await lstat(host).catch(() => undefined);
    if (!info) return undefined;
    if (info.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) return undefined;
      const target = await readlink(host);
      if (target.startsWith('/')) resolved.length = 0;
      pending = [...target.split('/').filter((item) => item !== '' && item !== '.'), ...pending];
      continue;
    }
    if (pending.length > 0 && !info.isDirectory()) return undefined;
    resolved.push(part);
  }
  return join(rootfs, ...resolved);
}

/** PATH of an OCI env list (the last PATH= wins, as in execve's environment). */
export function pathOf(env: readonly string[] | undefined): string | undefined {
  return env
    ?.filter((entry) => entry.startsWith('PATH='))
    .at(-1)
    ?.slice('PATH='.length);
}

export interface ExecutableLookup {
  found: boolean;
  /** What was searched: the PATH, or the path itself for a name with a slash. */
  searched: string;
}

/**
 * Finds `command` in the rootfs as runc's exec would (Go's exec.LookPath in the container): a name with a slash
 * is taken as a path (relative to cwd), any other is searched in PATH; it must be a regular file with an
 * execute bit.
 */
export async function findExecutable(
  rootfs: string,
  command: string,
  env: readonly string[] | undefined,
  cwd: string,
): Promise<ExecutableLookup> {
  if (command.includes('/')) {
    const path = command.startsWith('/') ? command : `${cwd.replace(/\/$/, '')}/${command}`;
    return { found: await isExecutable(rootfs, path), searched: path };
  }
  const searchPath = pathOf(env) ?? '';
  for (const dir of searchPath.split(':')) {
    const base = dir === '' ? cwd : dir;
    if (await isExecutable(rootfs, `${base.replace(/\/$/, '')}/${command}`)) {
      return { found: true, searched: searchPath };
    }
  }
  return { found: false, searched: searchPath };
}

async function isExecutable(rootfs: string, path: string): Promise<boolean> {
  const host = await resolveInRootfs(rootfs, path);
  if (!host) return false;
  const info = await lstat(host).catch(() => undefined);
  return info !== undefined && info.isFile() && (info.mode & 0o111) !== 0;
}
