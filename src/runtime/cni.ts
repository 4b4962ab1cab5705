import { mkdir, open, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { killProcessGroup, type ProcessRunner } from './process-runner.js';

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
    const { child } = await this.options.runner.spawn(binary, [], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {
        CNI_COMMAND: command,
        CNI_CONTAINERID: call.containerId,
        CNI_NETNS: call.netns,
        CNI_IFNAME: call.ifName,
        CNI_PATH: this.options.pluginDirs.join(':'),
      },
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.stdin?.end(input);
    const timer = setTimeout(() => killProcessGroup(child.pid), this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    let result;
    try {
      result = await child;
    } finally {
      clearTimeout(timer);
    }
    const out = Buffer.concat(stdout).toString('utf8');
    if (result.exitCode === 0) return out;
    const words = errorWords(out) ?? errorWords(Buffer.concat(stderr).toString('utf8'));
    throw new CniError(
      plugin.type,
      command,
      words?.code,
      words?.message ??
        (result.exitCode === undefined
          ? `could not run ${binary}: ${result.shortMessage}`
          : `exit status ${result.exitCode}: ${Buffer.concat(stderr).toString('utf8').trim() || out.trim()}`),
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

  /** Binds `/proc/PID/ns/net` onto `path`, so the namespace lives (and DEL finds it) after the container exits. */
  async pinNetns(pid: number, path: string): Promise<void> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await (await open(path, 'a', 0o600)).close();
    const result = await this.options.runner.run('mount', ['--bind', `/proc/${pid}/ns/net`, path], {
      timeoutMs: this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });
    if (result.exitCode !== 0) {
      await rm(path, { force: true });
      throw new CniError(
        'mount',
        'pin',
        undefined,
        `mount --bind of pid ${pid}'s netns failed: ${result.stderr.trim()}`,
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
