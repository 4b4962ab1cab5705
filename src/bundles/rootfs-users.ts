import { lstat, readFile } from 'node:fs/promises';
import { resolveInRootfs } from './rootfs-lookup.js';

/**
 * `user[:group]` as Docker resolves it against the image's own /etc/passwd and /etc/group (runc itself takes
 * only numbers): a name must be in the file; a uid that is there takes its primary group, one that is not gets
 * gid 0. The files are read inside the rootfs (symlinks resolved in it, never on the host) and only when they
 * are regular files of a sane size, since the rootfs is the caller's.
 */

const MAX_ACCOUNT_FILE_BYTES = 1024 * 1024;
const NUMERIC = /^\d{1,10}$/;
const MAX_ID = 2147483647;

export type UserResolution = { ok: true; uid: number; gid: number } | { ok: false; reason: string };

interface Entry {
  name: string;
  id: number;
  /** passwd: the primary gid. */
  gid?: number;
}

async function readEntries(rootfs: string, file: '/etc/passwd' | '/etc/group'): Promise<Entry[]> {
  const host = await resolveInRootfs(rootfs, file);
  if (host === undefined) return [];
  const info = await lstat(host).catch(() => undefined);
  if (!info?.isFile() || info.size > MAX_ACCOUNT_FILE_BYTES) return [];
  const text = await readFile(host, 'utf8').catch(() => '');
  const entries: Entry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields.length < 3 || !NUMERIC.test(fields[2]!)) continue;
    const gid = file === '/etc/passwd' && NUMERIC.test(fields[3] ?? '') ? Number(fields[3]) : undefined;
    entries.push({ name: fields[0]!, id: Number(fields[2]), ...(gid !== undefined ? { gid } : {}) });
  }
  return entries;
}

export async function resolveUserInRootfs(rootfs: string, spec: string): Promise<UserResolution> {
  const colon = spec.indexOf(':');
  const user = colon === -1 ? spec : spec.slice(0, colon);
  const group = colon === -1 ? undefined : spec.slice(colon + 1);
  if (user === '') return { ok: false, reason: `invalid user "${spec}": no user before the colon` };
  let uid: number;
  let gid = 0;
  if (NUMERIC.test(user)) {
    uid = Number(user);
    // Only a uid without a group takes the entry's group, so a fully numeric spec never reads the files.
    if (group === undefined) {
      const entry = (await readEntries(rootfs, '/etc/passwd')).find((each) => each.id === uid);
      gid = entry?.gid ?? 0;
    }
  } else {
    const entry = (await readEntries(rootfs, '/etc/passwd')).find((each) => each.name === user);
    if (!entry)
      return { ok: false, reason: `unable to find user ${user}: no matching entries in passwd file` };
    uid = entry.id;
    gid = entry.gid ?? 0;
  }
  if (group !== undefined && group !== '') {
    if (NUMERIC.test(group)) gid = Number(group);
    else {
      const entry = (await readEntries(rootfs, '/etc/group')).find((each) => each.name === group);
      if (!entry)
        return { ok: false, reason: `unable to find group ${group}: no matching entries in group file` };
      gid = entry.id;
    }
  }
  if (uid > MAX_ID || gid > MAX_ID) return { ok: false, reason: `user "${spec}": ids go up to ${MAX_ID}` };
  return { ok: true, uid, gid };
}
