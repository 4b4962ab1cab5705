import type { Stats } from 'node:fs';
import { lstat, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Path lookups inside a rootfs as the container will see them: symlinks are read and resolved relative to the
 * rootfs (an absolute target starts again at the rootfs, `..` stops at it), never followed on the host, so a
 * rootfs whose /bin is a symlink to /etc can never make runcd look at the host's /etc.
 *
 * Every lstat is a trip through libuv's thread pool (0.1-0.4 ms each here), and an exec's checks look up the cwd
 * and each PATH candidate: the candidates are looked up at once, and one lookup's `Lstats` asks for each host path
 * only once (PATH's /usr/local/sbin, /usr/local/bin, /usr/sbin and /usr/bin all start with /usr). The lookups stay
 * asynchronous on purpose: a path inside a container can sit on a filesystem that stalls, which must never stall
 * runcd's event loop.
 */

/** lstat, asked once per host path for the length of one lookup. */
class Lstats {
  private readonly known = new Map<string, Promise<Stats | undefined>>();

  of(host: string): Promise<Stats | undefined> {
    let pending = this.known.get(host);
    if (!pending) {
      pending = lstat(host).catch(() => undefined);
      this.known.set(host, pending);
    }
    return pending;
  }
}

const MAX_SYMLINKS = 40;

/** The host path of `path` inside `rootfs` with every symlink resolved in the rootfs; undefined if missing. */
export async function resolveInRootfs(rootfs: string, path: string): Promise<string | undefined> {
  return (await resolveWithInfo(rootfs, path, new Lstats()))?.host;
}

/** resolveInRootfs, with what is there (undefined when the path resolved to the rootfs itself, or via `..`). */
async function resolveWithInfo(
  rootfs: string,
  path: string,
  lstats: Lstats,
): Promise<{ host: string; info: Stats | undefined } | undefined> {
  let pending = path.split('/').filter((part) => part !== '' && part !== '.');
  const resolved: string[] = [];
  let links = 0;
  let info: Stats | undefined;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      resolved.pop();
      info = undefined;
      continue;
    }
    const host = join(rootfs, ...resolved, part);
    info = await lstats.of(host);
    if (!info) return undefined;
    if (info.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) return undefined;
      // A link can vanish between lstat and readlink (a container rewriting its files, or dying): missing.
      const target = await readlink(host).catch(() => undefined);
      if (target === undefined) return undefined;
      if (target.startsWith('/')) resolved.length = 0;
      pending = [...target.split('/').filter((item) => item !== '' && item !== '.'), ...pending];
      info = undefined;
      continue;
    }
    if (pending.length > 0 && !info.isDirectory()) return undefined;
    resolved.push(part);
  }
  // A path ending in `..` or in a symlink's target root was not lstat'ed as itself.
  return { host: join(rootfs, ...resolved), info: resolved.length > 0 ? info : undefined };
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
  /** For a path that exists but cannot be run: what it is instead. */
  problem?: 'directory' | 'not_executable' | 'not_regular';
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
  const lstats = new Lstats();
  if (command.includes('/')) {
    const path = command.startsWith('/') ? command : `${cwd.replace(/\/$/, '')}/${command}`;
    const kind = await executableKind(rootfs, path, lstats);
    if (kind === 'executable') return { found: true, searched: path };
    return { found: false, searched: path, ...(kind === 'missing' ? {} : { problem: kind }) };
  }
  const searchPath = pathOf(env) ?? '';
  // Every candidate at once; the first executable one in PATH's order wins, as LookPath's loop would find it.
  const kinds = await Promise.all(
    searchPath
      .split(':')
      .map((dir) =>
        executableKind(rootfs, `${(dir === '' ? cwd : dir).replace(/\/$/, '')}/${command}`, lstats),
      ),
  );
  return { found: kinds.includes('executable'), searched: searchPath };
}

async function infoInRootfs(rootfs: string, path: string, lstats: Lstats): Promise<Stats | undefined> {
  const found = await resolveWithInfo(rootfs, path, lstats);
  if (found === undefined) return undefined;
  // The root itself may be /proc/PID/root, a link to the container's root only stat sees through.
  return found.info ?? (await stat(found.host).catch(() => undefined));
}

/** What `path` is inside the rootfs (symlinks resolved in it): a directory, another file, or missing. */
export async function entryKind(
  rootfs: string,
  path: string,
): Promise<'directory' | 'file' | 'other' | 'missing'> {
  const info = await infoInRootfs(rootfs, path, new Lstats());
  if (!info) return 'missing';
  return info.isDirectory() ? 'directory' : info.isFile() ? 'file' : 'other';
}

async function executableKind(
  rootfs: string,
  path: string,
  lstats: Lstats,
): Promise<'executable' | 'missing' | 'directory' | 'not_executable' | 'not_regular'> {
  const info = await infoInRootfs(rootfs, path, lstats);
  if (!info) return 'missing';
  if (info.isDirectory()) return 'directory';
  if (!info.isFile()) return 'not_regular';
  return (info.mode & 0o111) !== 0 ? 'executable' : 'not_executable';
}
