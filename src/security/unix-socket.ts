import { readFileSync } from 'node:fs';
import { chmod, chown, mkdir, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';

/**
 * The unix socket is the front door of a root daemon: whoever can connect can run anything as root. So it is
 * mode 0660, owned by runcd's user and the socket group, in a directory only runcd's user can write; and all
 * of that is checked once listening, so a wrong umask, a pre-existing path or a failed chown stops startup
 * instead of leaving the door open.
 */

export class SocketSetupError extends Error {
  override name = 'SocketSetupError';
}

export const SOCKET_MODE = 0o660;
export const SOCKET_DIRECTORY_MODE = 0o750;

/** A group name from /etc/group, or a numeric gid. */
export function resolveGroup(group: string, groupFile = '/etc/group'): number {
  if (/^\d+$/.test(group)) return Number(group);
  let text = '';
  try {
    text = readFileSync(groupFile, 'utf8');
  } catch {
    // no group database: only numeric gids work
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new SocketSetupError(`--socket-group ${group}: no such group (create it with: groupadd ${group})`);
}

/**
 * Makes the socket's directory safe and removes a stale socket. Returns warnings for the log (a directory
 * that is safe but not 0750). A live socket means another daemon owns it.
 */
export async function prepareSocketPath(socket: string, gid: number): Promise<string[]> {
  const warnings: string[] = [];
  const dir = dirname(socket);
  const uid = process.getuid?.() ?? 0;
  const existing = await stat(dir).catch(() => undefined);
  if (!existing) {
    await mkdir(dir, { recursive: true, mode: SOCKET_DIRECTORY_MODE });
    await chown(dir, uid, gid);
    await chmod(dir, SOCKET_DIRECTORY_MODE);
  } else {
    if (!existing.isDirectory()) throw new SocketSetupError(`--socket ${socket}: ${dir} is not a directory`);
    if (existing.uid !== uid) {
      throw new SocketSetupError(
        `--socket ${socket}: directory ${dir} is owned by uid ${existing.uid}, not ${uid}; its owner could replace the socket`,
      );
    }
    if ((existing.mode & 0o022) !== 0) {
      throw new SocketSetupError(
        `--socket ${socket}: directory ${dir} has mode ${octal(existing.mode)}, writable by group or others, who could replace the socket; use a directory of mode 0750`,
      );
    }
    if ((existing.mode & 0o007) === 0) {
      // A private directory (runcd's own, e.g. systemd's RuntimeDirectory): let the socket group traverse it.
      if (existing.gid !== gid) await chown(dir, uid, gid);
      await chmod(dir, SOCKET_DIRECTORY_MODE);
    } else if ((existing.mode & 0o777) !== SOCKET_DIRECTORY_MODE) {
      warnings.push(
        `socket directory ${dir} has mode ${octal(existing.mode)}, not 0750; the socket's own mode (0660) still protects it`,
      );
    }
  }
  const previous = await stat(socket).catch(() => undefined);
  if (!previous) return warnings;
  if (!previous.isSocket()) throw new SocketSetupError(`--socket ${socket} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect(socket);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new SocketSetupError(`another daemon is already listening on ${socket}`);
  await rm(socket, { force: true });
  return warnings;
}

/** Runs `listen` with a umask that creates the socket 0600, so it is never briefly open to everyone. */
export async function listenPrivately<T>(listen: () => Promise<T>): Promise<T> {
  const previous = process.umask(0o177);
  try {
    return await listen();
  } finally {
    process.umask(previous);
  }
}

/** Sets the socket to 0660 root:GROUP, then checks that it really is, refusing to run otherwise. */
export async function secureSocket(socket: string, gid: number): Promise<void> {
  const uid = process.getuid?.() ?? 0;
  await chown(socket, uid, gid);
  await chmod(socket, SOCKET_MODE);
  const info = await stat(socket);
  const problems: string[] = [];
  if (!info.isSocket()) problems.push('it is not a socket');
  if ((info.mode & 0o777) !== SOCKET_MODE) problems.push(`mode is ${octal(info.mode)}, not 0660`);
  if (info.uid !== uid) problems.push(`owner is uid ${info.uid}, not ${uid}`);
  if (info.gid !== gid) problems.push(`group is gid ${info.gid}, not ${gid}`);
  if (problems.length > 0) throw new SocketSetupError(`--socket ${socket}: ${problems.join('; ')}`);
}

function octal(mode: number): string {
  return '0' + (mode & 0o7777).toString(8).padStart(3, '0');
}
