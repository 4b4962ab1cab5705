/**
 * What CNI networking adds (issue 16): `node dist/bench/network.js [--iterations N]` (default 20). Three series,
 * interleaved so a busy machine slows each alike:
 *   none     runcd create+start and delete of a container with network none (runc's loopback only);
 *   network  the same with one network and a published port (CNI ADD between create and start, DEL at delete);
 *   plugins  the same plugins (bridge, portmap, firewall) invoked directly, as a shell script would, ADD then DEL
 *            in a namespace of `ip netns add`: what no runtime can avoid paying.
 * runcd's own share is (network - none) - plugins. Everything is in one /tmp workspace with its own bridge
 * (rcdbench0, 10.87.250.0/24) and is removed at the end, even after a failure. No traffic is sent.
 */
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import pino from 'pino';
import { openDaemon, type Daemon } from '../src/daemon.js';
import type { CniConflist, CniPluginConfig } from '../src/runtime/cni.js';
import { CONMON, RUNC, Workspace } from './workspace.js';

const NETWORK = { name: 'rcdbench', subnet: '10.87.250.0/24', bridge: 'rcdbench0' };
/** A user network: containers there also get names (aardvark-dns). */
const USER_NETWORK = { name: 'rcdbench-user', subnet: '10.87.251.0/24', bridge: 'rcdbench1' };

/**
 * Where a networked create+start and delete spend their processes: each process runcd runs (through its runner),
 * timed from spawn to exit and summed per container, keyed by binary (and CNI command for plugins).
 */
function recordProcesses(daemon: Daemon): { take: () => Map<string, number> } {
  let current = new Map<string, number>();
  const add = (key: string, ms: number) => current.set(key, (current.get(key) ?? 0) + ms);
  const isPlugin = (binary: string) => binary.includes('/cni/');
  daemon.runner.onInvocation((invocation) => {
    if (!isPlugin(invocation.binary))
      add(invocation.binary.split('/').pop() ?? invocation.binary, invocation.durationMs);
  });
  // Plugins are keyed by their CNI command too (ADD, DEL): timed here, where the environment is seen.
  const run = daemon.runner.run.bind(daemon.runner);
  daemon.runner.run = async (binary, argv, options) => {
    const result = await run(binary, argv, options);
    if (isPlugin(binary))
      add(`${binary.split('/').pop()} ${options.env?.CNI_COMMAND ?? ''}`.trim(), result.durationMs);
    return result;
  };
  return {
    take: () => {
      const taken = current;
      current = new Map();
      return taken;
    },
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

async function timed(step: () => Promise<unknown> | unknown): Promise<number> {
  const started = performance.now();
  await step();
  return performance.now() - started;
}

async function call(daemon: Daemon, method: 'POST' | 'DELETE', url: string, payload?: object): Promise<void> {
  const response = await daemon.app.inject({ method, url, ...(payload ? { payload } : {}) });
  if (response.statusCode >= 300)
    throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`);
}

/** ADD then DEL of the conflist's plugins, each a process with its JSON on stdin, prevResult chained. */
function pluginsDirect(hostPort: number, conflist: CniConflist, netns: string, id: string) {
  const env = (command: string) => ({
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: id,
    CNI_NETNS: netns,
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/usr/lib/cni',
  });
  const configOf = (plugin: CniPluginConfig, prevResult?: unknown) => {
    const { capabilities, ...rest } = plugin;
    return JSON.stringify({
      ...rest,
      name: conflist.name,
      cniVersion: conflist.cniVersion,
      ...(capabilities
        ? { runtimeConfig: { portMappings: [{ hostPort, containerPort: 8080, protocol: 'tcp' }] } }
        : {}),
      ...(prevResult ? { prevResult } : {}),
    });
  };
  let result: unknown;
  const add = () => {
    for (const plugin of conflist.plugins) {
      const out = execFileSync(join('/usr/lib/cni', String(plugin.type)), [], {
        input: configOf(plugin, result),
        env: env('ADD'),
      });
      result = JSON.parse(out.toString()) as unknown;
    }
  };
  const del = () => {
    for (const plugin of [...conflist.plugins].reverse()) {
      execFileSync(join('/usr/lib/cni', String(plugin.type)), [], {
        input: configOf(plugin, result),
        env: env('DEL'),
      });
    }
  };
  return { add, del };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { iterations: { type: 'string' } } });
  const iterations = Number(values.iterations ?? 20);
  const workspace = new Workspace();
  const stateDir = workspace.path('state');
  const daemon = await openDaemon(
    {
      stateDir,
      runtimeRoot: workspace.runcRoot('runcd'),
      bundleRoots: [workspace.bundleRoot],
      runtimeBinary: RUNC,
      conmonBinary: CONMON,
      network: { defaultNetwork: NETWORK },
    },
    pino({ level: 'warn' }),
  );
  const times = {
    noneCreate: [] as number[],
    noneDelete: [] as number[],
    netCreate: [] as number[],
    netDelete: [] as number[],
    add: [] as number[],
    del: [] as number[],
    dnsCreate: [] as number[],
    dnsDelete: [] as number[],
  };
  const steps = new Map<string, number[]>();
  const processes = recordProcesses(daemon);
  const netnsName = `rcdbench-${process.pid}`;
  try {
    const bundle = workspace.bundle('sleeper', ['sleep', '999999']);
    // The first use creates the default network: not part of what is measured.
    await call(daemon, 'POST', '/containers', { id: 'warm', bundle, start: true, networks: [NETWORK.name] });
    await call(daemon, 'DELETE', '/containers/warm?force=true');
    const conflist = daemon.networks.conflist(daemon.networks.require(NETWORK.name));
    await daemon.networks.create(USER_NETWORK);
    execFileSync('ip', ['netns', 'add', netnsName]);
    for (let i = 0; i < iterations; i++) {
      times.noneCreate.push(
        await timed(() => call(daemon, 'POST', '/containers', { id: `none-${i}`, bundle, start: true })),
      );
      times.noneDelete.push(await timed(() => call(daemon, 'DELETE', `/containers/none-${i}?force=true`)));
      const body = {
        id: `net-${i}`,
        bundle,
        start: true,
        networks: [NETWORK.name],
        ports: [{ containerPort: 8080 }],
      };
      processes.take();
      times.netCreate.push(await timed(() => call(daemon, 'POST', '/containers', body)));
      times.netDelete.push(await timed(() => call(daemon, 'DELETE', `/containers/net-${i}?force=true`)));
      for (const [key, ms] of processes.take()) steps.set(key, [...(steps.get(key) ?? []), ms]);
      const named = { id: `dns-${i}`, bundle, start: true, networks: [USER_NETWORK.name] };
      times.dnsCreate.push(await timed(() => call(daemon, 'POST', '/containers', named)));
      times.dnsDelete.push(await timed(() => call(daemon, 'DELETE', `/containers/dns-${i}?force=true`)));
      // A port below the kernel's ephemeral range, so runcd's ephemeral choices never meet it.
      const direct = pluginsDirect(
        20_000 + (process.pid % 5_000) + i,
        conflist,
        `/run/netns/${netnsName}`,
        `direct-${i}`,
      );
      times.add.push(await timed(direct.add));
      times.del.push(await timed(direct.del));
    }
  } finally {
    try {
      execFileSync('ip', ['netns', 'delete', netnsName], { stdio: 'ignore' });
    } catch {
      // never made
    }
    await daemon.networks.delete(NETWORK.name).catch(() => undefined);
    await daemon.networks.delete(USER_NETWORK.name).catch(() => undefined);
    await daemon.close();
    await workspace.destroy();
  }
  const ms = (value: number) => `${value.toFixed(1)} ms`;
  const addedCreate = median(times.netCreate) - median(times.noneCreate);
  const addedDelete = median(times.netDelete) - median(times.noneDelete);
  console.log(`| median of ${iterations} | create+start | delete |`);
  console.log('| --- | --- | --- |');
  console.log(`| network none | ${ms(median(times.noneCreate))} | ${ms(median(times.noneDelete))} |`);
  console.log(
    `| one network + a published port | ${ms(median(times.netCreate))} | ${ms(median(times.netDelete))} |`,
  );
  console.log(`| networking added by runcd | ${ms(addedCreate)} | ${ms(addedDelete)} |`);
  console.log(
    `| the plugins invoked directly (ADD / DEL) | ${ms(median(times.add))} | ${ms(median(times.del))} |`,
  );
  console.log(
    `| runcd's own share | ${ms(addedCreate - median(times.add))} | ${ms(addedDelete - median(times.del))} |`,
  );
  console.log(
    `| a user network (names: aardvark-dns started, then stopped, each time) | ${ms(median(times.dnsCreate))} | ${ms(median(times.dnsDelete))} |`,
  );
  console.log('');
  console.log('| processes of one networked container (create+start and delete), through runcd | median |');
  console.log('| --- | --- |');
  for (const [key, values] of [...steps].sort(([a], [b]) => a.localeCompare(b))) {
    console.log(`| ${key} | ${ms(median(values))} |`);
  }
}

await main();
