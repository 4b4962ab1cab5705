import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ConflictError, InvalidInputError, NotFoundError } from '../errors.js';
import { KeyedMutex } from '../lifecycle/keyed-mutex.js';
import type { CniConflist } from '../runtime/cni.js';
import { RESERVED_NETWORK_NAMES, type CreateNetworkBody, type Network } from '../schemas/network.js';
import type { NetworkRecord, NetworkRepository } from '../store/network-repository.js';
import { conflistFor } from './network-conflist.js';
import {
  firstHost,
  numberToIpv4,
  overlaps,
  parseSubnet,
  subnetOfInterface,
  type Ipv4Subnet,
} from './subnets.js';

export interface NetworkSettings {
  /** Where runcd writes one conflist per network (`NAME.conflist`): what ADD ran with, readable by an operator. */
  configDir: string;
  /** host-local's dataDir: `DIR/NAME/ADDRESS` per allocation. */
  ipamDir: string;
  /** The network created on first use (`--default-network-*` flags). */
  defaultNetwork: { name: string; subnet: string; bridge: string };
  /** Where a published port goes when the caller names no host address (`--publish-host-ip`). */
  publishHostIp: string;
  /** `--cni-config-dir`: an operator's own conflists, usable by their name (read when a container asks). */
  operatorConfigDir?: string | undefined;
}

/** The bridge of a network whose creator named none: rcd- and a hash of the network's name. */
export function defaultBridgeOf(name: string): string {
  return `rcd-${createHash('sha256').update(name).digest('hex').slice(0, 10)}`;
}

/** User networks get the next free /24 of this range when they name no subnet (the default network is its first). */
const AUTO_SUBNET_POOL = '10.87.0.0/16';

export interface NetworkServiceDeps {
  repository: NetworkRepository;
  settings: NetworkSettings;
  /** Removes a bridge runcd's plugins made, when its network is deleted (the bridge plugin never does). */
  deleteLink: (name: string) => Promise<void>;
  /** After a network is deleted: its name server file goes (ContainerDns). */
  deleted?: (name: string) => Promise<void>;
  logger: Logger;
}

/**
 * runcd's CNI networks: create, list, inspect, delete, and the default bridge network made on first use. Each
 * network is a row in the store and a conflist file runcd writes; containers reach them through
 * ContainerNetworking (container-networking.ts). One lock for every change, so two creates cannot both take the
 * same subnet or bridge.
 */
export class NetworkService {
  private readonly locks = new KeyedMutex();

  constructor(private readonly deps: NetworkServiceDeps) {}

  /** Once at startup: what networking changes on the host (the README's list), so an operator sees it in the log. */
  logHostChanges(): void {
    const ipForward = (() => {
      try {
        return readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
      } catch {
        return 'unknown';
      }
    })();
    this.deps.logger.info(
      {
        networks: this.deps.repository
          .all()
          .map((network) => `${network.name} (${network.bridge}, ${network.subnet})`),
        ipForwardNow: ipForward,
      },
      'containers on networks change the host: net.ipv4.ip_forward=1, route_localnet=1 on runcd bridges, masquerade for their subnets, and CNI shared chains CNI-HOSTPORT-DNAT/MASQ/SETMARK, CNI-FORWARD, CNI-ADMIN',
    );
  }

  get settings(): NetworkSettings {
    return this.deps.settings;
  }

  list(): Network[] {
    return this.deps.repository.all().map((record) => this.toNetwork(record));
  }

  get(name: string): Network {
    return this.toNetwork(this.require(name));
  }

  require(name: string): NetworkRecord {
    const record = this.deps.repository.get(name);
    if (!record) throw new NotFoundError('network_not_found', `network "${name}" does not exist`);
    return record;
  }

  /**
   * The network by name: runcd's own, the default one created now if it is the one asked for and does not exist
   * yet, or an operator's conflist of that name.
   */
  async resolve(name: string): Promise<NetworkRecord> {
    const found = this.deps.repository.get(name);
    if (found) return found;
    const fallback = this.deps.settings.defaultNetwork;
    if (name !== fallback.name) return (await this.operatorNetwork(name)) ?? this.require(name);
    return this.locks.run('networks', async () => {
      const again = this.deps.repository.get(name);
      if (again) return again;
      const record = this.checkedRecord({ name, subnet: fallback.subnet, bridge: fallback.bridge }, true);
      await this.persist(record);
      this.deps.logger.info(
        { network: name, subnet: record.subnet, bridge: record.bridge },
        'default network created on first use',
      );
      return record;
    });
  }

  async create(body: CreateNetworkBody): Promise<Network> {
    return this.locks.run('networks', async () => {
      const record = this.checkedRecord(body, false);
      await this.persist(record);
      this.deps.logger.info(
        { network: record.name, subnet: record.subnet, bridge: record.bridge },
        'network created',
      );
      return this.toNetwork(record);
    });
  }

  async delete(name: string): Promise<void> {
    await this.locks.run('networks', async () => {
      const record = this.require(name);
      const users = this.deps.repository.usersOf(name);
      if (users.length > 0) {
        throw new ConflictError(
          'network_in_use',
          `network "${name}" is used by container${users.length > 1 ? 's' : ''} ${users.map((id) => `"${id}"`).join(', ')}; delete ${users.length > 1 ? 'them' : 'it'} first`,
        );
      }
      this.deps.repository.remove(name);
      await rm(this.conflistPath(name), { force: true });
      // host-local keeps `lock` and `last_reserved_ip.0` per network after every release: gone with the network.
      await rm(join(this.deps.settings.ipamDir, name), { recursive: true, force: true });
      await this.deps.deleteLink(record.bridge);
      await this.deps.deleted?.(name);
      this.deps.logger.info({ network: name, bridge: record.bridge }, 'network deleted');
    });
  }

  conflist(record: NetworkRecord): CniConflist {
    return record.operatorConflist ?? conflistFor(record, this.deps.settings.ipamDir);
  }

  /**
   * The conflist named `name` in the operator's directory (`*.conflist`, libcni's form: cniVersion, name,
   * plugins), as a network record that is never stored: runcd does not own its bridge, subnet or IPAM, so it
   * neither lists nor deletes it, and gives it no names (aardvark needs the gateway runcd's own networks have).
   * Files that are not a conflist are skipped with a warning, so one broken file does not hide the others.
   */
  private async operatorNetwork(name: string): Promise<NetworkRecord | undefined> {
    const dir = this.deps.settings.operatorConfigDir;
    if (!dir) return undefined;
    const files = (await readdir(dir).catch(() => [] as string[])).filter((file) =>
      file.endsWith('.conflist'),
    );
    for (const file of files.sort()) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(await readFile(join(dir, file), 'utf8'));
      } catch (error) {
        this.deps.logger.warn(
          { file: join(dir, file), err: error },
          'operator conflist is not JSON: skipped',
        );
        continue;
      }
      const conflist = parsed as Partial<CniConflist>;
      const wellFormed =
        typeof conflist.cniVersion === 'string' &&
        typeof conflist.name === 'string' &&
        Array.isArray(conflist.plugins) &&
        conflist.plugins.length > 0 &&
        conflist.plugins.every((plugin) => typeof plugin?.type === 'string');
      if (!wellFormed) {
        this.deps.logger.warn(
          { file: join(dir, file) },
          'operator conflist needs cniVersion, name and plugins (each with a type): skipped',
        );
        continue;
      }
      if (conflist.name !== name) continue;
      return {
        name,
        bridge: '',
        subnet: '',
        gateway: '',
        created: '',
        labels: {},
        isDefault: false,
        operatorConflist: conflist as CniConflist,
      };
    }
    return undefined;
  }

  private conflistPath(name: string): string {
    return join(this.deps.settings.configDir, `${name}.conflist`);
  }

  private async persist(record: NetworkRecord): Promise<void> {
    await mkdir(this.deps.settings.configDir, { recursive: true, mode: 0o700 });
    const path = this.conflistPath(record.name);
    await writeFile(`${path}.tmp`, JSON.stringify(this.conflist(record), null, 2) + '\n', { mode: 0o600 });
    await rename(`${path}.tmp`, path);
    this.deps.repository.insert(record);
  }

  private checkedRecord(body: CreateNetworkBody, isDefault: boolean): NetworkRecord {
    const { name } = body;
    if ((RESERVED_NETWORK_NAMES as readonly string[]).includes(name)) {
      throw new InvalidInputError('network_reserved_name', `"${name}" is a network mode, not a network name`);
    }
    if (this.deps.repository.get(name)) {
      throw new ConflictError('network_exists', `network "${name}" already exists`);
    }
    const existing = this.deps.repository.all();
    const taken = this.takenSubnets(existing);
    const subnet =
      body.subnet === undefined ? this.freeSubnet(taken) : this.requestedSubnet(body.subnet, taken);
    const bridge = body.bridge ?? defaultBridgeOf(name);
    const holder = existing.find((network) => network.bridge === bridge);
    if (holder) {
      throw new ConflictError(
        'network_bridge_taken',
        `bridge "${bridge}" is used by network "${holder.name}"`,
      );
    }
    // An interface of the host's or another daemon's (docker0, a podman bridge): the bridge plugin would enslave
    // containers to it, or fail on an interface that is not a bridge.
    if (existsSync(join('/sys/class/net', bridge))) {
      throw new ConflictError(
        'network_bridge_taken',
        `bridge "${bridge}" already exists on the host and is not runcd's; choose another name (or delete that interface)`,
      );
    }
    return {
      name,
      bridge,
      subnet: subnet.cidr,
      gateway: firstHost(subnet),
      created: new Date().toISOString(),
      labels: body.labels ?? {},
      isDefault,
    };
  }

  /** The other networks' subnets and every host interface's (bridges of runcd's own networks are those networks). */
  private takenSubnets(existing: NetworkRecord[]): Array<{ subnet: Ipv4Subnet; owner: string }> {
    const ours = new Set(existing.map((network) => network.bridge));
    const taken = existing.map((network) => ({
      subnet: parseSubnet(network.subnet)!,
      owner: `network "${network.name}"`,
    }));
    for (const [ifname, addresses] of Object.entries(networkInterfaces())) {
      if (ours.has(ifname)) continue;
      for (const address of addresses ?? []) {
        const subnet =
          address.family === 'IPv4' ? subnetOfInterface(address.address, address.netmask) : undefined;
        if (subnet)
          taken.push({ subnet, owner: `host interface ${ifname} (${address.cidr ?? subnet.cidr})` });
      }
    }
    return taken;
  }

  private requestedSubnet(cidr: string, taken: Array<{ subnet: Ipv4Subnet; owner: string }>): Ipv4Subnet {
    const subnet = parseSubnet(cidr);
    if (!subnet) {
      throw new InvalidInputError(
        'network_subnet_invalid',
        `subnet "${cidr}" must be IPv4 CIDR from /8 to /29 with its host bits zero (e.g. 10.87.5.0/24)`,
      );
    }
    const clash = taken.find((other) => overlaps(subnet, other.subnet));
    if (clash) {
      throw new ConflictError('network_subnet_overlap', `subnet ${subnet.cidr} overlaps ${clash.owner}`);
    }
    return subnet;
  }

  private freeSubnet(taken: Array<{ subnet: Ipv4Subnet; owner: string }>): Ipv4Subnet {
    const pool = parseSubnet(AUTO_SUBNET_POOL)!;
    for (let index = 0; index < 256; index++) {
      const base = pool.base + index * 256;
      const candidate: Ipv4Subnet = { base, prefix: 24, cidr: `${numberToIpv4(base)}/24` };
      if (!taken.some((other) => overlaps(candidate, other.subnet))) return candidate;
    }
    throw new ConflictError(
      'network_subnet_overlap',
      `every /24 of ${AUTO_SUBNET_POOL} is taken; give a subnet`,
    );
  }

  private toNetwork(record: NetworkRecord): Network {
    return {
      name: record.name,
      driver: 'bridge',
      bridge: record.bridge,
      subnet: record.subnet,
      gateway: record.gateway,
      created: record.created,
      labels: record.labels,
      default: record.isDefault,
      containers: this.deps.repository.usersOf(record.name),
    };
  }
}
