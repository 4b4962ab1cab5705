import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  chmodSync,
  constants,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The repository root, whether this file runs from bench/ or dist/bench/. */
export const REPO_ROOT = resolve(
  fileURLToPath(new URL('.', import.meta.url)),
  '..',
  ...(import.meta.url.includes('/dist/') ? ['..'] : []),
);

/** Absolute path of a binary on PATH, or undefined. */
export function which(binary: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const path = join(dir, binary);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

export const RUNC = process.env.RUNCD_BENCH_RUNTIME ?? which('runc') ?? 'runc';
export const CONMON = which('conmon') ?? 'conmon';

/**
 * Everything one bench run creates lives under one directory in /tmp: runcd's state dirs and runc roots, the
 * raw runc CLI's root, bundles and Podman's storage. Every runc root is remembered so the leftover check and the
 * final cleanup can look into each of them.
 */
export class Workspace {
  readonly dir: string;
  readonly bundleRoot: string;
  private readonly runcRoots = new Set<string>();

  constructor() {
    this.dir = join('/tmp', `runcd-bench-${randomBytes(3).toString('hex')}`);
    this.bundleRoot = join(this.dir, 'bundles');
    mkdirSync(this.bundleRoot, { recursive: true });
  }

  /** A fresh directory inside the workspace. */
  path(...parts: string[]): string {
    const path = join(this.dir, ...parts);
    mkdirSync(path, { recursive: true });
    return path;
  }

  /** A runc --root that the leftover check and cleanup will inspect. */
  runcRoot(name: string): string {
    const root = this.path('roots', name);
    this.runcRoots.add(root);
    return root;
  }

  /** A busybox bundle under the bundle root (scripts/make-busybox-bundle.sh) whose init runs `args`. */
  bundle(name: string, args: string[]): string {
    const path = join(this.bundleRoot, name);
    execFileSync(join(REPO_ROOT, 'scripts', 'make-busybox-bundle.sh'), [path, ...args], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, RUNTIME: RUNC },
    });
    return path;
  }

  /**
   * A runtime wrapper that appends one line per invocation to a file before exec'ing runc: it counts every runc
   * process runcd (or conmon on its behalf) starts, from outside the daemon.
   */
  countingRuntime(): { binary: string; count: () => number } {
    const counter = join(this.path('counting-runtime'), 'invocations');
    const binary = join(this.dir, 'counting-runtime', 'runc');
    writeFileSync(counter, '');
    writeFileSync(binary, `#!/bin/sh\necho "$*" >> '${counter}'\nexec '${RUNC}' "$@"\n`);
    chmodSync(binary, 0o755);
    return {
      binary,
      count: () => readFileSync(counter, 'utf8').split('\n').filter(Boolean).length,
    };
  }

  /** Containers still present in any runc root of this workspace. */
  async leftoverContainers(): Promise<string[]> {
    const leftovers: string[] = [];
    for (const root of this.runcRoots) {
      for (const id of await listRuncIds(root)) leftovers.push(`${root}: ${id}`);
    }
    return leftovers;
  }

  /**
   * conmon processes of this workspace that are still alive (zombies waiting for PID 1 to reap them are not),
   * optionally only those whose command line mentions `under` (a runcd's state dir, say).
   */
  liveMonitors(under = this.dir): number[] {
    return processesMatching(
      (cmdline, state) => isConmon(cmdline) && cmdline.includes(under) && state !== 'Z',
    );
  }

  /** Live conmon processes, described by pid and the start of their command line. */
  describeLiveMonitors(under = this.dir): string[] {
    return this.liveMonitors(under).map((pid) => {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      return `pid ${pid}: ${cmdline.slice(0, 200)}`;
    });
  }

  /** Forcibly removes whatever is left: runc containers, conmon monitors, then the directory itself. */
  async destroy(): Promise<void> {
    for (const root of this.runcRoots) {
      for (const id of await listRuncIds(root)) {
        await execFileAsync(RUNC, [`--root=${root}`, 'delete', '--force', id]).catch(() => undefined);
      }
    }
    for (const pid of this.liveMonitors()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    unmountBelow(this.dir);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function listRuncIds(root: string): Promise<string[]> {
  try {
    const { stdout } = await execFileAsync(RUNC, [`--root=${root}`, 'list', '--format', 'json']);
    const listed = JSON.parse(stdout.trim() || 'null') as Array<{ id: string }> | null;
    return (listed ?? []).map((entry) => entry.id);
  } catch {
    return [];
  }
}

function isConmon(cmdline: string): boolean {
  const binary = cmdline.slice(0, cmdline.indexOf('\0'));
  return binary === 'conmon' || binary.endsWith('/conmon');
}

/** Pids whose command line and state (the letter of /proc/PID/stat) satisfy `match`. */
export function processesMatching(match: (cmdline: string, state: string) => boolean): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (match(cmdline, state)) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

/** Podman's overlay mounts must go before the directory can be removed. */
function unmountBelow(dir: string): void {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((target) => target.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
  for (const target of mounts) {
    try {
      execFileSync('umount', ['-l', target], { stdio: 'ignore' });
    } catch {
      // already unmounted
    }
  }
}
