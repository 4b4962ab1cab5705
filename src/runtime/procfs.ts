import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

export interface ProcessDetails {
  pid: number;
  ppid: number;
  uid: number;
  state: string;
  command: string;
}

/**
 * Reads what `ps` would show for a host pid from /proc. Returns undefined when the process is gone (it may exit
 * between `runc ps` and this read).
 */
export async function readProcess(pid: number): Promise<ProcessDetails | undefined> {
  try {
    const [stat, status, cmdline] = await Promise.all([
      readFile(`/proc/${pid}/stat`, 'utf8'),
      readFile(`/proc/${pid}/status`, 'utf8'),
      readFile(`/proc/${pid}/cmdline`, 'utf8'),
    ]);
    // comm may contain spaces and parentheses: fields after the last ')' are fixed.
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1);
    const command = cmdline.split('\0').filter(Boolean).join(' ') || `[${comm}]`;
    return { pid, ppid: Number(fields[1]), uid, state: fields[0] ?? '?', command };
  } catch {
    return undefined;
  }
}

/** Whether `pid` is a live process (a zombie has exited: where nobody reaps it, it lingers as one). */
export function isProcessRunning(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}
