import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ConflictError, InvalidInputError, RuntimeFailureError } from '../errors.js';
import { KeyedMutex } from '../lifecycle/keyed-mutex.js';
import type { Cni, CniConflist, CniResult } from '../runtime/cni.js';
import type { OciSpec } from '../runtime/oci.js';
import type { ContainerNetworkState, PortMappingRequest } from '../schemas/network.js';
import type {
  Attachment,
  ContainerNetworkRecord,
  NetworkRecord,
  NetworkRepository,
  PortMappingRecord,
} from '../store/network-repository.js';
import { endpointOf } from './cni-results.js';
import type { ContainerDns } from './container-dns.js';
import { bindProbe } from './host-ports.js';
import type { NetworkService } from './network-service.js';
import { NameFiles } from './name-files.js';

export interface ContainerNetworkRequest {
  networks?: string[] | undefined;
  ports?: PortMappingRequest[] | undefined;
  aliases?: string[] | undefined;
}

export interface ContainerNetworkingDeps {
  networks: NetworkService;
  repository: NetworkRepository;
  cni: Cni;
  dns: ContainerDns;
  /** Where each container's network namespace is pinned (`DIR/ID`). */
  netnsDir: string;
  /** Where each container's /etc/hosts and /etc/resolv.conf are written (`DIR/ID/`). */
  filesDir: string;
  logger: Logger;
}

const EPHEMERAL_ATTEMPTS = 20;
/** Ports one container may publish once ranges are expanded (portmap writes a rule per port). */
const MAX_PUBLISHED_PORTS = 1024;

/**
 * A container's networks between create and start, in the seed lesson's words: "configure networking after
 * namespaces exist but before the app runs". The lifecycle calls, in order:
 * - prepare (at POST /containers, under the id's lock, before anything exists): the networks exist (the default
 *   one is made on first use), the ports are free (a 409 naming the port otherwise), the request is stored;
 * - attach (after `runc create`, before `runc start`): the netns is pinned, then CNI ADD per network;
 * - release/detach (at exit, and before a restart's new instance is attached): CNI DEL, then the pin goes;
 * - forget (at delete): detach, then the stored request goes.
 * Every step that changes the host is recorded in the store first, so reconcile (after a SIGKILL) knows what to
 * undo. Steps for one container are serialized; ports are decided under one lock for the whole daemon.
 */
export class ContainerNetworking {
  private readonly locks = new KeyedMutex();
  private readonly names: NameFiles;
  /** Containers with a stored request: every other one is network none without asking the store (GET /containers). */
  private readonly known = new Set<string>();
  private readonly listeners: Array<() => void> = [];

  constructor(private readonly deps: ContainerNetworkingDeps) {
    this.names = new NameFiles(deps.filesDir);
    for (const record of deps.repository.containers()) this.known.add(record.containerId);
  }

  /** Called whenever what describe() answers changes outside the lifecycle's own writes (a teardown at exit). */
  watch(listener: () => void): void {
    this.listeners.push(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  /**
   * Checks and stores the request; answers the mounts (/etc/hosts, /etc/resolv.conf) to add to the container's
   * config, none for network none. Nothing is created when it throws.
   */
  async prepare(
    containerId: string,
    request: ContainerNetworkRequest,
    spec: OciSpec,
  ): Promise<NonNullable<OciSpec['mounts']>> {
    // A row left by an earlier container of this id whose teardown failed: undone before it is replaced.
    if (this.deps.repository.container(containerId)) await this.forget(containerId);
    const requested = request.networks ?? [];
    if (requested.includes('none') && requested.length > 1) {
      throw new InvalidInputError(
        'invalid_body',
        'network "none" cannot be combined with other networks',
        containerId,
      );
    }
    const names = requested.filter((name) => name !== 'none');
    const duplicate = names.find((name, index) => names.indexOf(name) !== index);
    if (duplicate) {
      throw new InvalidInputError('invalid_body', `network "${duplicate}" is given twice`, containerId);
    }
    if (names.length === 0) {
      if (request.aliases?.length) {
        throw new InvalidInputError(
          'network_aliases_unsupported',
          'aliases are names on a user network: give networks with aliases',
          containerId,
        );
      }
      if (request.ports?.length) {
        throw new InvalidInputError(
          'invalid_port_mapping',
          'ports are published through a network: give networks (e.g. ["runcd"]) with ports',
          containerId,
        );
      }
      return [];
    }
    const namespaces = (spec.linux?.namespaces ?? []) as Array<{ type: string; path?: string }>;
    if (!namespaces.some((namespace) => namespace.type === 'network' && !namespace.path)) {
      throw new InvalidInputError(
        'network_namespace_shared',
        'networks need a network namespace of the container\'s own: add {"type": "network"} to linux.namespaces',
        containerId,
      );
    }
    const records: NetworkRecord[] = [];
    for (const name of names) records.push(await this.deps.networks.resolve(name));
    const aliases = [...new Set(request.aliases ?? [])];
    if (aliases.length > 0 && !records.some((network) => !network.isDefault)) {
      throw new InvalidInputError(
        'network_aliases_unsupported',
        `aliases need a user network: "${names.join('", "')}" is the default network, which has no name resolution (as Docker's default bridge)`,
        containerId,
      );
    }
    // One lock for every container's ports: two creates cannot both be handed the same free port.
    return this.locks.run('<ports>', async () => {
      const ports = await this.choosePorts(containerId, request.ports ?? []);
      this.deps.repository.putContainer({
        containerId,
        networks: names,
        ports,
        aliases,
        attachment: null,
      });
      this.known.add(containerId);
      return this.names.prepare(containerId, spec.hostname, this.deps.dns.nameservers(records));
    });
  }

  /** CNI ADD for each network into the pinned namespace of `pid`; on failure everything done is undone. */
  async attach(containerId: string, pid: number): Promise<void> {
    await this.locks.run(containerId, async () => {
      const record = this.deps.repository.container(containerId);
      if (!record) return;
      if (record.attachment) {
        // A setup a killed runcd left: its ADD may have run before the pin's mount did (they run side by side).
        if (!(await this.deps.cni.isPinned(record.attachment.netns))) {
          await this.deps.cni.pinNetns(`/proc/${pid}/ns/net`, record.attachment.netns);
        }
        await this.teardown(record.containerId, record.attachment);
      }
      const netns = join(this.deps.netnsDir, containerId);
      const conflists: CniConflist[] = [];
      for (const name of record.networks) {
        conflists.push(this.deps.networks.conflist(await this.deps.networks.resolve(name)));
      }
      // Every network, each with the conflist its ADD runs with, in one durable write before the pin exists: a
      // runcd killed at any later step still unmounts the pin and runs DEL (a DEL of a network whose ADD never
      // ran is one the plugins answer as done). One fsync instead of one per step.
      const attachment: Attachment = {
        netns,
        networks: record.networks.map((name, index) => ({
          name,
          ifName: `eth${index}`,
          conflist: JSON.stringify(conflists[index]),
          result: null as unknown,
        })),
      };
      this.deps.repository.setAttachment(containerId, attachment);
      // ADD goes into the namespace held open by runcd while the pin's mount runs beside it (cni.holdNetns): the
      // pin was a process of its own in front of every ADD. DEL only ever uses the pin, or, if pinning fails, the
      // held namespace, which is released only once that DEL has run.
      const held = await this.deps.cni.holdNetns(pid).catch((error: unknown) => {
        throw this.setupFailed(containerId, error);
      });
      const pinned = this.deps.cni.pinNetns(held.path, netns).then(
        () => undefined,
        (error: unknown) => error as Error,
      );
      try {
        for (const [index, entry] of attachment.networks.entries()) {
          entry.result = await this.deps.cni.add(conflists[index]!, {
            containerId,
            netns: held.path,
            ifName: entry.ifName,
            capabilityArgs: index === 0 ? { portMappings: record.ports } : {},
          });
          this.deps.repository.recordResult(containerId, attachment);
        }
        const pinError = await pinned;
        if (pinError) throw pinError;
        await this.names.write(containerId, this.describe(containerId));
        // Before start: the container's first lookup of a peer (or of itself) already finds it.
        await this.deps.dns.update(record.networks, { expect: containerId });
      } catch (error) {
        await pinned;
        await this.teardown(containerId, attachment, held.path).catch((cleanup: unknown) =>
          this.deps.logger.error({ containerId, err: cleanup }, 'undoing a failed network setup failed'),
        );
        throw this.setupFailed(containerId, error);
      } finally {
        await held.release();
      }
      this.deps.logger.info({ containerId, networks: record.networks }, 'container networks set up');
    });
  }

  /**
   * `docker network connect`: the network joins the container's request and, while its namespace is pinned
   * (created, running or paused), CNI ADD runs into it now as the first free ethN; a stopped container gets it at
   * its next start. Published ports stay on the network they were published through.
   */
  async connect(containerId: string, name: string, aliases: string[]): Promise<void> {
    const network = await this.deps.networks.resolve(name);
    await this.locks.run(containerId, async () => {
      const record = this.deps.repository.container(containerId);
      if (!record) {
        throw new ConflictError(
          'network_mode_none',
          `container "${containerId}" has network none: networks are given at create`,
          containerId,
        );
      }
      if (record.networks.includes(name)) {
        throw new ConflictError(
          'network_already_connected',
          `container "${containerId}" is on network "${name}" already`,
          containerId,
        );
      }
      if (aliases.length > 0 && network.isDefault) {
        throw new InvalidInputError(
          'network_aliases_unsupported',
          `aliases need a user network: "${name}" is the default network, which has no name resolution`,
          containerId,
        );
      }
      const updated = {
        ...record,
        networks: [...record.networks, name],
        aliases: [...new Set([...record.aliases, ...aliases])],
      };
      this.deps.repository.putContainer(updated);
      const attachment = record.attachment;
      if (attachment) {
        const used = new Set(attachment.networks.map((entry) => entry.ifName));
        let index = 0;
        while (used.has(`eth${index}`)) index++;
        const conflist = this.deps.networks.conflist(network);
        const entry = {
          name,
          ifName: `eth${index}`,
          conflist: JSON.stringify(conflist),
          result: null as unknown,
        };
        attachment.networks.push(entry);
        this.deps.repository.setAttachment(containerId, attachment);
        const call = { containerId, netns: attachment.netns, ifName: entry.ifName, capabilityArgs: {} };
        try {
          entry.result = await this.deps.cni.add(conflist, call);
          this.deps.repository.setAttachment(containerId, attachment);
        } catch (error) {
          await this.deps.cni
            .del(conflist, call, undefined)
            .catch((cleanup: unknown) =>
              this.deps.logger.error(
                { containerId, err: cleanup },
                'undoing a failed network connect failed',
              ),
            );
          attachment.networks.splice(attachment.networks.indexOf(entry), 1);
          this.deps.repository.putContainer({ ...record, attachment });
          throw new RuntimeFailureError(
            'network_setup_failed',
            `connecting container "${containerId}" to network "${name}" failed: ${(error as Error).message}`,
            containerId,
          );
        }
        await this.names.write(containerId, this.describe(containerId));
        await this.refreshResolvConf(containerId, updated.networks);
        await this.deps.dns.update(updated.networks, { expect: containerId });
      } else {
        await this.refreshResolvConf(containerId, updated.networks);
      }
      this.changed();
      this.deps.logger.info({ containerId, network: name }, 'container connected to a network');
    });
  }

  /** `docker network disconnect`: CNI DEL of that network now (if it is set up), and it leaves the request. */
  async disconnect(containerId: string, name: string): Promise<void> {
    await this.locks.run(containerId, async () => {
      const record = this.deps.repository.container(containerId);
      if (!record?.networks.includes(name)) {
        throw new ConflictError(
          'network_not_connected',
          `container "${containerId}" is not on network "${name}"`,
          containerId,
        );
      }
      if (record.ports.length > 0 && record.networks[0] === name) {
        throw new ConflictError(
          'network_carries_ports',
          `the published ports of container "${containerId}" go through network "${name}"`,
          containerId,
        );
      }
      const attachment = record.attachment;
      const entry = attachment?.networks.find((each) => each.name === name);
      if (attachment && entry) {
        await this.deps.dns.update([name], { without: containerId });
        await this.deps.cni.del(
          JSON.parse(entry.conflist) as CniConflist,
          { containerId, netns: attachment.netns, ifName: entry.ifName, capabilityArgs: {} },
          (entry.result ?? undefined) as CniResult | undefined,
        );
        attachment.networks.splice(attachment.networks.indexOf(entry), 1);
      }
      const networks = record.networks.filter((each) => each !== name);
      this.deps.repository.putContainer({ ...record, networks, attachment });
      await this.names.write(containerId, this.describe(containerId));
      await this.refreshResolvConf(containerId, networks);
      this.changed();
      this.deps.logger.info({ containerId, network: name }, 'container disconnected from a network');
    });
  }

  private async refreshResolvConf(containerId: string, networks: string[]): Promise<void> {
    const records = networks.flatMap((each) => this.deps.repository.get(each) ?? []);
    await this.names.rewriteResolvConf(containerId, this.deps.dns.nameservers(records));
  }

  /** At the container's exit: its networks are torn down in the background (DEL is serialized per container). */
  release(containerId: string): void {
    if (!this.deps.repository.container(containerId)?.attachment) return;
    void this.detach(containerId).catch((error: unknown) =>
      this.deps.logger.error({ containerId, err: error }, 'network teardown failed; reconcile retries it'),
    );
  }

  async detach(containerId: string): Promise<void> {
    await this.locks.run(containerId, async () => {
      const record = this.deps.repository.container(containerId);
      if (record?.attachment) await this.teardown(containerId, record.attachment);
    });
  }

  /**
   * At delete (and after a failed create): teardown, then the request. A teardown that fails keeps the row,
   * so the next start's reconcile tries again instead of forgetting what is left on the host.
   */
  async forget(containerId: string): Promise<void> {
    await this.locks.run(containerId, async () => {
      const record = this.deps.repository.container(containerId);
      if (!record) return;
      try {
        if (record.attachment) await this.teardown(containerId, record.attachment);
      } catch (error) {
        this.deps.logger.error(
          { containerId, err: error },
          'network teardown at delete failed; reconcile retries it',
        );
        return;
      }
      this.deps.repository.removeContainer(containerId);
      this.known.delete(containerId);
      this.changed();
      await this.names.remove(containerId);
    });
  }

  /**
   * After the lifecycle's own reconcile: DEL for every container that is gone or stopped (a runcd killed at any
   * step, or a container that exited while runcd was down), and a fresh setup for a created container whose
   * setup a killed runcd never finished.
   */
  async reconcile(containers: Map<string, { status: string; pid: number }>): Promise<void> {
    for (const record of this.deps.repository.containers()) {
      const container = containers.get(record.containerId);
      try {
        if (!container) {
          this.deps.logger.warn(
            { containerId: record.containerId },
            'removing the networks of a container that is gone',
          );
          await this.forget(record.containerId);
        } else if (container.status === 'stopped') {
          await this.detach(record.containerId);
        } else if (container.status === 'created' && !this.complete(record)) {
          this.deps.logger.warn({ containerId: record.containerId }, 'redoing an interrupted network setup');
          await this.attach(record.containerId, container.pid);
        }
      } catch (error) {
        this.deps.logger.error({ containerId: record.containerId, err: error }, 'network reconcile failed');
      }
    }
    await this.deps.dns
      .reconcile()
      .catch((error: unknown) =>
        this.deps.logger.error({ err: error }, 'name resolution on user networks could not be restored'),
      );
  }

  /** What GET /containers/ID shows; undefined for network none. */
  describe(containerId: string): ContainerNetworkState | undefined {
    if (!this.known.has(containerId)) return undefined;
    const record = this.deps.repository.container(containerId);
    if (!record) return undefined;
    return {
      networks: record.networks.map((name, index) => {
        const attached = record.attachment?.networks.find((entry) => entry.name === name);
        const ifName = attached?.ifName ?? `eth${index}`;
        const endpoint = endpointOf(attached?.result as CniResult | null | undefined, ifName);
        const network = this.deps.repository.get(name);
        return {
          network: name,
          interface: ifName,
          ipAddress: endpoint.address,
          prefixLength: endpoint.prefixLength,
          gateway: endpoint.gateway,
          macAddress: endpoint.macAddress,
          aliases: network && this.deps.dns.serves(network) ? record.aliases : [],
        };
      }),
      ports: record.ports,
    };
  }

  private setupFailed(containerId: string, error: unknown): RuntimeFailureError {
    return new RuntimeFailureError(
      'network_setup_failed',
      `network setup of container "${containerId}" failed: ${(error as Error).message}`,
      containerId,
    );
  }

  private complete(record: ContainerNetworkRecord): boolean {
    const attached = record.attachment?.networks ?? [];
    return attached.length === record.networks.length && attached.every((entry) => entry.result !== null);
  }

  /**
   * DEL in reverse order of ADD, each with its cached result; the pin goes only when every DEL succeeded. `netns`:
   * the namespace to DEL in when it is not the pin (a setup whose pin failed: the namespace runcd holds open).
   */
  private async teardown(
    containerId: string,
    attachment: Attachment,
    netns: string = attachment.netns,
  ): Promise<void> {
    // Names first: no peer should resolve to an address about to be released (and handed to another container).
    await this.deps.dns
      .update(
        attachment.networks.map((entry) => entry.name),
        { without: containerId },
      )
      .catch((error: unknown) =>
        this.deps.logger.error({ containerId, err: error }, "removing the container's names from DNS failed"),
      );
    const remaining = [...attachment.networks];
    let firstError: unknown;
    for (const entry of [...attachment.networks].reverse()) {
      try {
        const record = this.deps.repository.container(containerId);
        const skipped = await this.deps.cni.del(
          JSON.parse(entry.conflist) as CniConflist,
          {
            containerId,
            netns,
            ifName: entry.ifName,
            capabilityArgs: entry.ifName === 'eth0' ? { portMappings: record?.ports ?? [] } : {},
          },
          (entry.result ?? undefined) as CniResult | undefined,
        );
        if (skipped.length > 0) {
          this.deps.logger.warn(
            { containerId, network: entry.name, plugins: skipped },
            'CNI plugins not installed: their DEL was skipped (whatever their ADD did, if it ran, is left)',
          );
        }
        remaining.splice(remaining.indexOf(entry), 1);
      } catch (error) {
        firstError ??= error;
      }
    }
    if (firstError) {
      this.deps.repository.setAttachment(containerId, { netns: attachment.netns, networks: remaining });
      throw firstError;
    }
    await this.deps.cni.unpinNetns(attachment.netns);
    this.deps.repository.setAttachment(containerId, null);
    this.changed();
    this.deps.logger.info({ containerId }, 'container networks torn down');
  }

  private async choosePorts(
    containerId: string,
    requested: PortMappingRequest[],
  ): Promise<PortMappingRecord[]> {
    const taken = new Map<string, string>();
    for (const other of this.deps.repository.containers()) {
      if (other.containerId === containerId) continue;
      for (const port of other.ports)
        taken.set(`${port.protocol}/${port.hostPort}/${port.hostIp}`, other.containerId);
    }
    const takenBy = (protocol: string, hostPort: number, hostIp: string): string | undefined => {
      for (const [key, owner] of taken) {
        const [otherProtocol, otherPort, otherIp] = key.split('/');
        if (otherProtocol !== protocol || Number(otherPort) !== hostPort) continue;
        if (otherIp === hostIp || otherIp === '0.0.0.0' || hostIp === '0.0.0.0') return owner;
      }
      return undefined;
    };
    const chosen: PortMappingRecord[] = [];
    /** Why hostIp:hostPort/protocol cannot be published, if it cannot. */
    const refusal = async (hostIp: string, hostPort: number, protocol: 'tcp' | 'udp') => {
      const spec = `${hostIp}:${hostPort}/${protocol}`;
      if (chosen.some((each) => each.protocol === protocol && each.hostPort === hostPort)) {
        return new InvalidInputError(
          'invalid_port_mapping',
          `host port ${spec} is published twice`,
          containerId,
        );
      }
      const owner = takenBy(protocol, hostPort, hostIp);
      if (owner) {
        return new ConflictError(
          'port_in_use',
          `host port ${spec} is published by container "${owner}"`,
          containerId,
        );
      }
      if ((await bindProbe(hostIp, hostPort, protocol)) === undefined) {
        return new ConflictError(
          'port_in_use',
          `host port ${spec} is taken on this host (or ${hostIp} is not one of its addresses)`,
          containerId,
        );
      }
      return undefined;
    };
    // Cross-field rules here rather than in the schema: the OpenAPI document cannot say them, so a request valid
    // by the document is refused by runcd's own code (invalid_port_mapping), not by validation.
    for (const port of requested) {
      const count = port.range ?? 1;
      const refuse = (message: string) => {
        throw new InvalidInputError('invalid_port_mapping', message, containerId);
      };
      if (port.containerPort + count - 1 > 65535 || (port.hostPort ?? 0) + count - 1 > 65535) {
        refuse(`ports ${port.containerPort}+${count}: the range goes past port 65535`);
      }
      if (port.hostPortEnd !== undefined) {
        if (port.hostPort === undefined || port.hostPortEnd < port.hostPort) {
          refuse(`hostPortEnd ${port.hostPortEnd} needs a hostPort no greater than it`);
        }
        if (count > 1) {
          refuse('give range (several container ports) or hostPortEnd (a choice of host port), not both');
        }
      }
    }
    const expanded = requested.flatMap((port) =>
      Array.from({ length: port.range ?? 1 }, (_, offset) => ({
        ...port,
        containerPort: port.containerPort + offset,
        hostPort: port.hostPort === undefined ? undefined : port.hostPort + offset,
      })),
    );
    if (expanded.length > MAX_PUBLISHED_PORTS) {
      throw new InvalidInputError(
        'invalid_port_mapping',
        `${expanded.length} ports once ranges are counted: at most ${MAX_PUBLISHED_PORTS} per container`,
        containerId,
      );
    }
    for (const port of expanded) {
      const protocol = port.protocol ?? 'tcp';
      const hostIp = port.hostIp ?? this.deps.networks.settings.publishHostIp;
      if (!isIPv4(hostIp)) {
        throw new InvalidInputError(
          'invalid_port_mapping',
          `hostIp ${hostIp} is not an IPv4 address`,
          containerId,
        );
      }
      let hostPort = port.hostPort;
      if (hostPort === undefined) {
        for (let attempt = 0; attempt < EPHEMERAL_ATTEMPTS && hostPort === undefined; attempt++) {
          const candidate = await bindProbe(hostIp, 0, protocol);
          if (candidate === undefined) {
            throw new InvalidInputError(
              'invalid_port_mapping',
              `cannot bind ${hostIp} on this host: it is not one of its addresses`,
              containerId,
            );
          }
          if (!takenBy(protocol, candidate, hostIp) && !chosen.some((each) => each.hostPort === candidate)) {
            hostPort = candidate;
          }
        }
        if (hostPort === undefined) {
          throw new ConflictError(
            'port_in_use',
            `no free ephemeral ${protocol} port on ${hostIp}`,
            containerId,
          );
        }
      } else if (port.hostPortEnd !== undefined) {
        // Docker's `-p 8080-8085:80`: the first host port of the range that is free.
        let found: number | undefined;
        for (let candidate = hostPort; candidate <= port.hostPortEnd && found === undefined; candidate++) {
          if (!(await refusal(hostIp, candidate, protocol))) found = candidate;
        }
        if (found === undefined) {
          throw new ConflictError(
            'port_in_use',
            `no host port of ${hostIp}:${hostPort}-${port.hostPortEnd}/${protocol} is free`,
            containerId,
          );
        }
        hostPort = found;
      } else {
        const refused = await refusal(hostIp, hostPort, protocol);
        if (refused) throw refused;
      }
      chosen.push({ hostIp, hostPort, containerPort: port.containerPort, protocol });
    }
    return chosen;
  }
}
