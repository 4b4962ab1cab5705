import { mkdir, open, rm, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ProcessRunner } from './process-runner.js';

/**
 * The CNI adapter: runs CNI plugins (ADD/DEL, as libcni does: one process per plugin of a conflist, JSON on
 * stdin, the result on stdout) and pins a container's network namespace with a bind mount. It lives in the
 * runtime layer, not in src/network/, because the runtime layer is the one place runcd spawns processes (the
 * process runner's deadlines, clean environment and slot limits then cover plugins too); src/network/ decides
 * which networks a container gets and keeps their state, this file only speaks the protocol.
 *
 * Facts it relies on (CNI SPEC.md, and containernetworking-plugins 1.1.1 as measured here):
 * - ADD runs the plugins in order, each getting the previous one's result as `prevResult`; DEL runs them in
 *   reverse with the cached final result, must be run even after a failed ADD, and may be repeated.
 * - Plugins 1.1.1 print their error object on stdout (the spec says stderr), so both are read.
 * - A plugin declaring a capability (`portMappings`) gets it in `runtimeConfig`, its `capabilities` dropped.
 * - DEL against `/proc/PID/ns/net` of an exited container leaks the bridge plugin's ipMasq chain
 *   (containernetworking/plugins#810) and a recycled pid would point at someone else's namespace: so every call
 *   uses a bind mount of the namespace (the pin), which outlives the container's processes.
 */

export interface CniPluginConfig {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface CniConflist {
  cniVersion: string;
  name: string;
  plugins: CniPluginConfig[];
}

export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
}

export interface CniIp {
  interface?: number;
  address: string;
  gateway?: string;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIp[];
  routes?: unknown[];
  dns?: unknown;
}

export interface CniInvocation {
  containerId: string;
  /** The pinned namespace (a path), never /proc/PID/ns/net. */
  netns: string;
  ifName: string;
  /** Capability arguments (`portMappings`), given to the plugins that declare them. */
  capabilityArgs: Record<string, unknown>;
}

/** A plugin's refusal, with the plugin's own words (its CNI error `msg` and `details`). */
export class CniError extends Error {
  override name = 'CniError';
  constructor(
    readonly plugin: string,
    readonly command: string,
    readonly cniCode: number | undefined,
    message: string,
    /** The plugin's binary is not installed: nothing of it ran. */
    readonly pluginMissing = false,
  ) {
    super(`CNI ${command} of plugin ${plugin}: ${message}`);
  }
}

export interface CniOptions {
  runner: ProcessRunner;
  /** Directories the plugins are looked up in (CNI_PATH). */
  pluginDirs: string[];
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
/** statfs(2)'s f_type of a namespace file (linux/magic.h NSFS_MAGIC). */
const NSFS_MAGIC = 0x6e736673;

export class Cni {
  constructor(private readonly options: CniOptions) {}

  /** ADD: every plugin in order, prevResult chained; the final result (to cache for DEL). */
  async add(conflist: CniConflist, call: CniInvocation): Promise<CniResult> {
    let previous: CniResult | undefined;
    for (const plugin of conflist.plugins) {
      const stdout = await this.invoke('ADD', conflist, plugin, call, previous);
      previous = parseResult(plugin.type, stdout);
    }
    if (!previous)
      throw new CniError('(none)', 'ADD', undefined, `network "${conflist.name}" has no plugins`);
    return previous;
  }

  /**
   * DEL: every plugin in reverse, each with the cached result (or none, when ADD never finished). Every plugin is
   * run even when one fails, so one plugin's failure leaves as little as possible behind; the first error is thrown.
   * A plugin that is not installed cannot be run, now or on any retry: it is skipped and named in the answer.
   */
  async del(conflist: CniConflist, call: CniInvocation, cached: CniResult | undefined): Promise<string[]> {
    let firstError: unknown;
    const skipped: string[] = [];
    for (const plugin of [...conflist.plugins].reverse()) {
      try {
        await this.invoke('DEL', conflist, plugin, call, cached);
      } catch (error) {
        if (error instanceof CniError && error.pluginMissing) skipped.push(plugin.type);
        else firstError ??= error;
      }
    }
    if (firstError) throw firstError;
    return skipped;
  }

  private async invoke(
    command: 'ADD' | 'DEL',
    conflist: CniConflist,
    plugin: CniPluginConfig,
    call: CniInvocation,
    prevResult: CniResult | undefined,
  ): Promise<string> {
    const { capabilities, ...rest } = plugin;
    const runtimeConfig = Object.fromEntries(
      Object.entries(capabilities ?? {})
        .filter(([name, declared]) => declared && call.capabilityArgs[name] !== undefined)
        .map(([name]) => [name, call.capabilityArgs[name]]),
    );
    const input = JSON.stringify({
      ...rest,
      name: conflist.name,
      cniVersion: conflist.cniVersion,
      ...(Object.keys(runtimeConfig).length > 0 ? { runtimeConfig } : {}),
      ...(prevResult ? { prevResult } : {}),
    });
    const binary = await this.findPlugin(plugin.type, command);
    // Through the runner's run(), so the spawn helper forks the plugin rather than runcd's own large process:
    // bench/RESULTS.md measured the three plugins at 141.8 ms summed when runcd forked them against 114.5 ms from
    // the bench's own process (s3-net); this change is not yet re-measured on a quiet machine.
    let result;
    try {
      result = await this.options.runner.run(binary, [], {
        input,
        env: {
          CNI_COMMAND: command,
          CNI_CONTAINERID: call.containerId,
          CNI_NETNS: call.netns,
          CNI_IFNAME: call.ifName,
          CNI_PATH: this.options.pluginDirs.join(':'),
        },
        timeoutMs: this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      });
    } catch (error) {
      throw new CniError(plugin.type, command, undefined, (error as Error).message);
    }
    if (result.exitCode === 0 && !result.timedOut) return result.stdout;
    const words = errorWords(result.stdout) ?? errorWords(result.stderr);
    throw new CniError(
      plugin.type,
      command,
      words?.code,
      words?.message ??
        (result.timedOut
          ? `${binary} did not finish within ${this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`
          : `exit status ${result.exitCode}: ${result.stderr.trim() || result.stdout.trim()}`),
    );
  }

  private async findPlugin(type: string, command: string): Promise<string> {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(type)) {
      throw new CniError(type, command, undefined, 'plugin type is not a plain file name', true);
    }
    for (const dir of this.options.pluginDirs) {
      const candidate = join(dir, type);
      try {
        await (await open(candidate, 'r')).close();
        return candidate;
      } catch {
        // the next directory
      }
    }
    throw new CniError(
      type,
      command,
      undefined,
      `plugin not found in ${this.options.pluginDirs.join(', ')} (apt-get install containernetworking-plugins)`,
      true,
    );
  }

  /**
   * Holds the network namespace of `pid` open in runcd (a descriptor, no process): while it is held the namespace
   * cannot go away, and `path` (`/proc/RUNCD/fd/N`) names it for the plugins and for the pin's bind mount. That lets
   * ADD run at once, while the pin's `mount` runs beside it, and a pin that fails after ADD still has a namespace
   * for the DEL that undoes it. Callers close it when the pin exists (or the attempt is undone).
   */
  async holdNetns(pid: number): Promise<{ path: string; release: () => Promise<void> }> {
    let handle;
    try {
      handle = await open(`/proc/${pid}/ns/net`, 'r');
    } catch (error) {
      throw new CniError('netns', 'pin', undefined, `pid ${pid}'s netns: ${(error as Error).message}`);
    }
    return { path: `/proc/${process.pid}/fd/${handle.fd}`, release: () => handle.close() };
  }

  /**
   * Whether `path` is a mounted network namespace (nsfs), not the empty file a runcd killed before its pin's
   * mount leaves: DEL in that file would fail, so a living container's namespace is pinned again first.
   */
  async isPinned(path: string): Promise<boolean> {
    try {
      return (await statfs(path)).type === NSFS_MAGIC;
    } catch {
      return false;
    }
  }

  /** Binds a namespace (`/proc/PID/ns/net`, or a held one) onto `path`, so it lives after the container exits. */
  async pinNetns(source: string, path: string): Promise<void> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await (await open(path, 'a', 0o600)).close();
    const result = await this.options.runner.run('mount', ['--bind', source, path], {
      timeoutMs: this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });
    if (result.exitCode !== 0) {
      await rm(path, { force: true });
      throw new CniError(
        'mount',
        'pin',
        undefined,
        `mount --bind of ${source} failed: ${result.stderr.trim()}`,
      );
    }
  }

  /** Removes a network interface (a network's bridge, which the bridge plugin never removes). Absent is fine. */
  async deleteLink(name: string): Promise<void> {
    const result = await this.options.runner.run('ip', ['link', 'delete', 'dev', name], {
      timeoutMs: this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });
    if (result.exitCode !== 0 && !/Cannot find device|does not exist/i.test(result.stderr)) {
      throw new CniError(
        'ip',
        'link delete',
        undefined,
        `ip link delete ${name} failed: ${result.stderr.trim()}`,
      );
    }
  }

  /** Unmounts the pin (if mounted) and removes its file. Repeatable. */
  async unpinNetns(path: string): Promise<void> {
    const result = await this.options.runner.run('umount', [path], {
      timeoutMs: this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });
    if (result.exitCode !== 0 && !/not mounted|no mount point|No such file/i.test(result.stderr)) {
      throw new CniError('umount', 'unpin', undefined, `umount ${path} failed: ${result.stderr.trim()}`);
    }
    await rm(path, { force: true });
  }
}

function parseResult(plugin: string, stdout: string): CniResult {
  try {
    const parsed = JSON.parse(stdout) as CniResult;
    if (typeof parsed === 'object' && parsed !== null) return parsed;
  } catch {
    // below
  }
  throw new CniError(plugin, 'ADD', undefined, `result is not JSON: ${stdout.slice(0, 200)}`);
}

function errorWords(text: string): { code: number | undefined; message: string } | undefined {
  try {
    const parsed = JSON.parse(text) as { code?: number; msg?: string; details?: string };
    if (typeof parsed.msg !== 'string') return undefined;
    return { code: parsed.code, message: parsed.details ? `${parsed.msg}: ${parsed.details}` : parsed.msg };
  } catch {
    return undefined;
  }
}
