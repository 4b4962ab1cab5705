import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { openDaemon, type Daemon } from '../../src/daemon.js';
import { destroySandbox, RUNTIME_BINARY, type Sandbox } from './sandbox.js';

/**
 * What a container's networking leaves on the host, read the way an operator would (ip, iptables-save, the
 * mount table, the IPAM directory), so a test can compare before and after.
 */
export interface HostTraces {
  /** veths enslaved to the bridge. */
  veths: string[];
  /** iptables rules (nat and filter) naming any of the given ids or addresses. */
  rules: string[];
  /** host-local's allocation files (addresses) for the network. */
  allocations: string[];
  /** Pinned namespaces: files in STATE/netns and mounts under the sandbox (of the given ids, if any). */
  pins: string[];
}

export function hostTraces(sandbox: Sandbox, bridge: string, network: string, needles: string[]): HostTraces {
  let veths: string[] = [];
  try {
    const links = JSON.parse(
      execFileSync('ip', ['-j', 'link', 'show', 'master', bridge], {
        stdio: ['ignore', 'pipe', 'ignore'],
      }).toString() || '[]',
    ) as Array<{ ifname: string }>;
    veths = links.map((link) => link.ifname).sort();
  } catch {
    // no such bridge: nothing on it
  }
  const ruleset = execFileSync('iptables-save', [], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  const rules = ruleset
    .split('\n')
    .filter((line) => line.startsWith('-A') && needles.some((needle) => line.includes(needle)));
  const ipamDir = join(sandbox.stateDir, 'cni', 'ipam', network);
  const allocations = existsSync(ipamDir)
    ? readdirSync(ipamDir)
        .filter((name) => /^\d+\.\d+\.\d+\.\d+$/.test(name))
        .sort()
    : [];
  const netnsDir = join(sandbox.stateDir, 'netns');
  const pins = [
    ...(existsSync(netnsDir) ? readdirSync(netnsDir) : []),
    ...readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((line) => line.includes(sandbox.dir)),
  ].filter((pin) => needles.length === 0 || needles.some((needle) => pin.includes(needle)));
  return { veths, rules, allocations, pins };
}

/** What runcd's name server leaves: a running aardvark-dns of the sandbox and its per-network files. */
export interface DnsTraces {
  /** The pids of the aardvark-dns processes serving the sandbox's directory (one at most, when runcd is right). */
  servers: number[];
  files: string[];
}

export function dnsTraces(sandbox: Sandbox): DnsTraces {
  const dir = join(sandbox.stateDir, 'aardvark-dns');
  const files = existsSync(dir) ? readdirSync(dir).sort() : [];
  const servers: number[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const state = /\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
      if (state !== 'Z' && argv.some((arg) => arg.endsWith('aardvark-dns')) && argv.includes(dir)) {
        servers.push(Number(pid));
      }
    } catch {
      // gone meanwhile
    }
  }
  return { servers, files };
}

const silent = pino({ level: process.env.RUNCD_TEST_LOG ?? 'silent' });

/**
 * Teardown of a networking test, whatever state it failed in: every container in the sandbox's runc root is
 * removed, a daemon on the same state directory then undoes their networks the way a restarted runcd does
 * (reconcile: DEL for containers that are gone) and deletes every container and network it knows (bridges, IPAM
 * state); what even that missed (a pin, a bridge) is removed by hand before the sandbox's files go.
 */
export async function cleanUpNetworking(
  sandbox: Sandbox,
  bridges: string[],
  config: Parameters<typeof openDaemon>[0],
): Promise<void> {
  try {
    const listed = JSON.parse(
      execFileSync(RUNTIME_BINARY, [
        `--root=${sandbox.runtimeRoot}`,
        'list',
        '--format',
        'json',
      ]).toString() || 'null',
    ) as Array<{ id: string }> | null;
    for (const { id } of listed ?? []) {
      try {
        execFileSync(RUNTIME_BINARY, [`--root=${sandbox.runtimeRoot}`, 'delete', '--force', id], {
          stdio: 'ignore',
        });
      } catch {
        // gone already
      }
    }
  } catch {
    // no runc root
  }
  let daemon: Daemon | undefined;
  try {
    daemon = await openDaemon(config, silent);
    for (const container of daemon.containers.list()) {
      await daemon.containers.delete(container.id, { force: true }).catch(() => undefined);
    }
    for (const network of daemon.networks.list())
      await daemon.networks.delete(network.name).catch(() => undefined);
  } catch {
    // the manual steps below still run
  } finally {
    await daemon?.close();
  }
  for (const pid of dnsTraces(sandbox).servers) process.kill(pid, 'SIGKILL');
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mountPoint = line.split(' ')[4];
    if (mountPoint?.startsWith(sandbox.dir)) execFileSync('umount', [mountPoint], { stdio: 'ignore' });
  }
  for (const bridge of bridges) {
    try {
      execFileSync('ip', ['link', 'delete', 'dev', bridge], { stdio: 'ignore' });
    } catch {
      // not there
    }
  }
  destroySandbox(sandbox);
}

/** The daemon flags that give a test file a default network of its own (name, subnet and bridge no other file uses). */
export function defaultNetworkFlags(network: { name: string; subnet: string; bridge: string }): string[] {
  return [
    '--default-network',
    network.name,
    '--default-network-subnet',
    network.subnet,
    '--default-network-bridge',
    network.bridge,
  ];
}
