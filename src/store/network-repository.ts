import type { CniConflist } from '../runtime/cni.js';
import type { Db } from './database.js';
import { commitDurably } from './database.js';

export interface NetworkRecord {
  name: string;
  bridge: string;
  subnet: string;
  gateway: string;
  created: string;
  labels: Record<string, string>;
  isDefault: boolean;
  /** An operator's own network (--cni-config-dir): its conflist as written there; never stored. */
  operatorConflist?: CniConflist;
}

export interface PortMappingRecord {
  hostIp: string;
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

/** One network's CNI state for a container: the conflist ADD ran with (DEL must use the same) and its result. */
export interface AttachedNetwork {
  name: string;
  ifName: string;
  conflist: string;
  /** null while ADD has not returned (or failed): DEL then runs without a cached result. */
  result: unknown;
}

export interface Attachment {
  /** The pinned network namespace. */
  netns: string;
  networks: AttachedNetwork[];
}

export interface ContainerNetworkRecord {
  containerId: string;
  networks: string[];
  ports: PortMappingRecord[];
  /** Names the container answers to on its user networks, besides its id. */
  aliases: string[];
  attachment: Attachment | null;
}

interface NetworkRow {
  name: string;
  bridge: string;
  subnet: string;
  gateway: string;
  created: string;
  labels: string;
  is_default: number;
}

interface ContainerNetworkRow {
  container_id: string;
  networks: string;
  ports: string;
  aliases: string;
  attachment: string | null;
}

/** The networks table and each container's network request and CNI state. */
export class NetworkRepository {
  private readonly statements;

  constructor(private readonly db: Db) {
    this.statements = {
      insert: db.prepare(
        `INSERT INTO networks (name, bridge, subnet, gateway, created, labels, is_default)
         VALUES (@name, @bridge, @subnet, @gateway, @created, @labels, @is_default)`,
      ),
      all: db.prepare<[], NetworkRow>('SELECT * FROM networks ORDER BY created, name'),
      get: db.prepare<[string], NetworkRow>('SELECT * FROM networks WHERE name = ?'),
      remove: db.prepare<[string]>('DELETE FROM networks WHERE name = ?'),
      putContainer: db.prepare(
        `INSERT OR REPLACE INTO container_networks (container_id, networks, ports, aliases, attachment)
         VALUES (@container_id, @networks, @ports, @aliases, @attachment)`,
      ),
      setAttachment: db.prepare<[string | null, string]>(
        'UPDATE container_networks SET attachment = ? WHERE container_id = ?',
      ),
      container: db.prepare<[string], ContainerNetworkRow>(
        'SELECT * FROM container_networks WHERE container_id = ?',
      ),
      containers: db.prepare<[], ContainerNetworkRow>(
        'SELECT * FROM container_networks ORDER BY container_id',
      ),
      removeContainer: db.prepare<[string]>('DELETE FROM container_networks WHERE container_id = ?'),
      usersOf: db.prepare<[string], { container_id: string }>(
        `SELECT container_id FROM container_networks, json_each(container_networks.networks)
         WHERE json_each.value = ? ORDER BY container_id`,
      ),
    };
  }

  insert(network: NetworkRecord): void {
    this.statements.insert.run({
      name: network.name,
      bridge: network.bridge,
      subnet: network.subnet,
      gateway: network.gateway,
      created: network.created,
      labels: JSON.stringify(network.labels),
      is_default: network.isDefault ? 1 : 0,
    });
  }

  all(): NetworkRecord[] {
    return this.statements.all.all().map(toNetwork);
  }

  get(name: string): NetworkRecord | undefined {
    const row = this.statements.get.get(name);
    return row && toNetwork(row);
  }

  remove(name: string): void {
    this.statements.remove.run(name);
  }

  /** Containers whose request names the network (attached or not). */
  usersOf(name: string): string[] {
    return this.statements.usersOf.all(name).map((row) => row.container_id);
  }

  /** Durable: a runcd killed right after must still know this container may have CNI state to undo. */
  putContainer(record: ContainerNetworkRecord): void {
    commitDurably(this.db, () =>
      this.statements.putContainer.run({
        container_id: record.containerId,
        networks: JSON.stringify(record.networks),
        ports: JSON.stringify(record.ports),
        aliases: JSON.stringify(record.aliases),
        attachment: record.attachment ? JSON.stringify(record.attachment) : null,
      }),
    );
  }

  /** Durable, for the same reason: written before ADD and after each DEL. */
  setAttachment(containerId: string, attachment: Attachment | null): void {
    commitDurably(this.db, () =>
      this.statements.setAttachment.run(attachment ? JSON.stringify(attachment) : null, containerId),
    );
  }

  /**
   * An ADD's result, not fsynced: it survives a runcd SIGKILL (WAL in the page cache); only a power loss can lose
   * it, and then the durable record written before ADD still makes the next start run DEL (without the cached
   * result, which the plugins' DEL does not need).
   */
  recordResult(containerId: string, attachment: Attachment): void {
    this.statements.setAttachment.run(JSON.stringify(attachment), containerId);
  }

  container(containerId: string): ContainerNetworkRecord | undefined {
    const row = this.statements.container.get(containerId);
    return row && toContainerNetwork(row);
  }

  containers(): ContainerNetworkRecord[] {
    return this.statements.containers.all().map(toContainerNetwork);
  }

  removeContainer(containerId: string): void {
    this.statements.removeContainer.run(containerId);
  }
}

function toNetwork(row: NetworkRow): NetworkRecord {
  return {
    name: row.name,
    bridge: row.bridge,
    subnet: row.subnet,
    gateway: row.gateway,
    created: row.created,
    labels: JSON.parse(row.labels) as Record<string, string>,
    isDefault: row.is_default === 1,
  };
}

function toContainerNetwork(row: ContainerNetworkRow): ContainerNetworkRecord {
  return {
    containerId: row.container_id,
    networks: JSON.parse(row.networks) as string[],
    ports: JSON.parse(row.ports) as PortMappingRecord[],
    aliases: JSON.parse(row.aliases) as string[],
    attachment: row.attachment ? (JSON.parse(row.attachment) as Attachment) : null,
  };
}
