import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { KeyedMutex } from '../lifecycle/keyed-mutex.js';
import type { Aardvark } from '../runtime/aardvark.js';
import type { CniResult } from '../runtime/cni.js';
import type { NetworkRecord, NetworkRepository } from '../store/network-repository.js';
import { endpointOf } from './cni-results.js';
import { queryA } from './dns-probe.js';

/** Containers get it as their first search domain; aardvark strips it, and never forwards a name under it. */
export const DNS_SEARCH_DOMAIN = 'dns.runcd';

const PROBE_DEADLINE_MS = 3_000;
const PROBE_ATTEMPT_MS = 200;

export interface ContainerDnsDeps {
  repository: NetworkRepository;
  /** Absent when aardvark-dns is not installed: no network resolves names then (logged at startup). */
  aardvark: Aardvark | undefined;
  /** Where a network's file is written before it is renamed into aardvark's directory (same filesystem). */
  scratchDir: string;
  logger: Logger;
}

/**
 * Names on user networks, served by aardvark-dns (netavark's DNS server, Debian's aardvark-dns package). Chosen
 * over CNI's dnsname plugin (not installed here, one dnsmasq per network, and unmaintained since Podman moved
 * to aardvark) and over writing peers into each container's /etc/hosts (nslookup and every resolver that asks
 * DNS would not see them, and every container's file would be rewritten at each start and stop): one small
 * process for all networks, reading plain per-network files, reloaded by SIGHUP, answering on each bridge's
 * gateway address, forwarding other names to the host's resolvers as Docker's embedded DNS does.
 *
 * The default network has none, as Docker's default bridge: containers there get the host's resolvers only.
 * A network's file lists its running containers (id and aliases → address); it exists while at least
 * one runs, and aardvark runs while any file exists. Every change rewrites whole files from the store, so a
 * runcd killed at any moment is corrected by `reconcile` at its next start (the server itself lives on, like
 * conmon, and keeps answering for the containers that keep running).
 */
export class ContainerDns {
  private readonly lock = new KeyedMutex();

  constructor(private readonly deps: ContainerDnsDeps) {}

  get available(): boolean {
    return this.deps.aardvark !== undefined;
  }

  /** Whether containers on this network resolve each other by name. */
  serves(network: NetworkRecord): boolean {
    return this.available && !network.isDefault && !network.operatorConflist;
  }

  /** The nameservers of a container on these networks: their gateways, or none (then the host's). */
  nameservers(networks: NetworkRecord[]): string[] {
    return networks.filter((network) => this.serves(network)).map((network) => network.gateway);
  }

  /**
   * Rewrites the files of `networks` from the store, leaving out container `without` (one being torn down),
   * and makes aardvark serve them; with `expect`, waits until it answers that container's name on each.
   */
  async update(networks: string[], options: { without?: string; expect?: string } = {}): Promise<void> {
    const aardvark = this.deps.aardvark;
    if (!aardvark) return;
    await this.lock.run('dns', async () => {
      const records = networks
        .map((name) => this.deps.repository.get(name))
        .filter((network): network is NetworkRecord => network !== undefined && this.serves(network));
      const entries = this.entries(options.without);
      await mkdir(aardvark.configDir, { recursive: true, mode: 0o700 });
      for (const name of networks) {
        const network = records.find((record) => record.name === name);
        await this.writeFile(name, network, entries.get(name) ?? []);
      }
      await this.apply();
      if (options.expect) await this.waitForName(options.expect, records, entries);
    });
  }

  /** At startup: every file rewritten from the store, files of networks gone removed, aardvark made to agree. */
  async reconcile(): Promise<void> {
    const aardvark = this.deps.aardvark;
    if (!aardvark) return;
    const present = await readdir(aardvark.configDir).catch(() => [] as string[]);
    const known = this.deps.repository.all().map((network) => network.name);
    await this.update([...new Set([...known, ...present.filter((name) => name !== 'aardvark.pid')])]);
  }

  /** Per network: the running containers' lines (id, address, names). */
  private entries(without: string | undefined): Map<string, string[]> {
    const lines = new Map<string, string[]>();
    for (const record of this.deps.repository.containers()) {
      if (record.containerId === without || !record.attachment) continue;
      const names = [
        ...new Set(
          [record.containerId, ...record.aliases]
            .map((name) => name.toLowerCase())
            .filter((name) => /^[a-z0-9][a-z0-9_.-]*$/.test(name)),
        ),
      ];
      for (const attached of record.attachment.networks) {
        const { address } = endpointOf(attached.result as CniResult | null, attached.ifName);
        if (!address) continue;
        const list = lines.get(attached.name) ?? [];
        list.push(`${record.containerId} ${address}  ${names.join(',')}`);
        lines.set(attached.name, list);
      }
    }
    return lines;
  }

  /** Whole files only: aardvark stops serving every network when it reads one half-written file. */
  private async writeFile(name: string, network: NetworkRecord | undefined, lines: string[]): Promise<void> {
    const path = join(this.deps.aardvark!.configDir, name);
    if (!network || lines.length === 0) {
      await rm(path, { force: true });
      return;
    }
    await mkdir(this.deps.scratchDir, { recursive: true, mode: 0o700 });
    const scratch = join(this.deps.scratchDir, name);
    await writeFile(scratch, [network.gateway, ...lines].join('\n') + '\n', { mode: 0o600 });
    await rename(scratch, path);
  }

  private async apply(): Promise<void> {
    const aardvark = this.deps.aardvark!;
    const files = (await readdir(aardvark.configDir)).filter((name) => name !== 'aardvark.pid');
    const pid = await aardvark.running();
    if (files.length === 0) {
      if (pid !== undefined) {
        await aardvark.stop(pid);
        this.deps.logger.info({ pid }, 'aardvark-dns stopped: no container on a user network runs');
      }
      return;
    }
    if (pid === undefined) {
      const started = await aardvark.start();
      this.deps.logger.info({ pid: started, networks: files }, 'aardvark-dns started');
    } else {
      await aardvark.reload(pid);
    }
  }

  private async waitForName(
    containerId: string,
    networks: NetworkRecord[],
    entries: Map<string, string[]>,
  ): Promise<void> {
    const name = `${containerId.toLowerCase()}.${DNS_SEARCH_DOMAIN}`;
    for (const network of networks) {
      const line = entries.get(network.name)?.find((each) => each.startsWith(`${containerId} `));
      const address = line?.split(' ')[1];
      if (!address) continue;
      const deadline = Date.now() + PROBE_DEADLINE_MS;
      let answered = false;
      while (!answered && Date.now() < deadline) {
        answered = (await queryA(network.gateway, name, PROBE_ATTEMPT_MS))?.includes(address) ?? false;
        if (!answered) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      if (!answered) {
        this.deps.logger.warn(
          { containerId, network: network.name, gateway: network.gateway },
          "aardvark-dns does not answer this container's name yet; it starts anyway (is port 53 of the gateway taken?)",
        );
      }
    }
  }
}
