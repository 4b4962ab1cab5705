import { z } from 'zod';

/**
 * Networks (issue 16). A name becomes part of a file name (its conflist) and of CNI's IPAM directory, so it is
 * as strict as a container id; `none` and `host` are not networks but modes, and cannot be created.
 */
export const NETWORK_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
export const RESERVED_NETWORK_NAMES = ['none', 'host'] as const;

export const NetworkName = z
  .string()
  .regex(
    NETWORK_NAME_PATTERN,
    'network name must be 1-63 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit',
  )
  .describe('Network name')
  .meta({ example: 'backend' });

export const NetworkNameParams = z.object({ name: NetworkName });

/** Linux interface names are at most 15 bytes (IFNAMSIZ - 1). */
const BridgeName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/, 'bridge must be 1-15 characters of A-Z a-z 0-9 _ . -')
  .describe('Linux bridge the network uses (created by the bridge plugin on first use)');

const Ipv4 = z.ipv4().describe('IPv4 address');

export const CreateNetworkBody = z
  .object({
    name: NetworkName,
    subnet: z
      .string()
      .max(32)
      .optional()
      .describe(
        'IPv4 CIDR, /8 to /29 (default: the next free /24 in 10.87.0.0/16); may not overlap another network or a host interface',
      ),
    bridge: BridgeName.optional().describe('Default: rcd- and a hash of the name'),
    labels: z.record(z.string().max(256), z.string().max(4096)).optional(),
  })
  .strict()
  .meta({ example: { name: 'backend', subnet: '10.87.5.0/24' } });
export type CreateNetworkBody = z.infer<typeof CreateNetworkBody>;

export const Network = z
  .object({
    name: NetworkName,
    driver: z.literal('bridge'),
    bridge: z.string(),
    subnet: z.string(),
    gateway: z.string(),
    created: z.string(),
    labels: z.record(z.string(), z.string()),
    default: z.boolean().describe('The network runcd created itself on first use'),
    containers: z.array(z.string()).describe('Containers attached to (or created on) it'),
  })
  .meta({
    id: 'Network',
    example: {
      name: 'backend',
      driver: 'bridge',
      bridge: 'rcd-3f2a9c1d0b',
      subnet: '10.87.5.0/24',
      gateway: '10.87.5.1',
      created: '2026-12-03T11:00:00.000Z',
      labels: {},
      default: false,
      containers: ['web-1'],
    },
  });
export type Network = z.infer<typeof Network>;

/** A name aardvark-dns answers: no spaces or commas (its file's separators), as strict as a container id. */
export const DnsName = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/,
    'alias must be 1-63 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit',
  )
  .meta({ example: 'db' });

export const PortProtocol = z.enum(['tcp', 'udp']);

export const PortMappingRequest = z
  .object({
    hostIp: Ipv4.optional().describe(
      "Host address to publish on (default 127.0.0.1, or the daemon's --publish-host-ip)",
    ),
    hostPort: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe('Default: an ephemeral port, reported back'),
    containerPort: z.number().int().min(1).max(65535),
    protocol: PortProtocol.optional().describe('Default tcp'),
    range: z
      .number()
      .int()
      .min(1)
      .max(1024)
      .optional()
      .describe(
        'Publish this many consecutive ports: hostPort..hostPort+range-1 to containerPort..containerPort+range-1 (docker run -p 8080-8081:80-81); without hostPort each gets an ephemeral port',
      ),
    hostPortEnd: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe(
        'With hostPort: the first free host port of hostPort..hostPortEnd (docker run -p 8080-8085:80)',
      ),
  })
  .strict();
export type PortMappingRequest = z.infer<typeof PortMappingRequest>;

export const PortMapping = z.object({
  hostIp: z.string(),
  hostPort: z.number().int(),
  containerPort: z.number().int(),
  protocol: PortProtocol,
});
export type PortMapping = z.infer<typeof PortMapping>;

export const NetworkEndpoint = z.object({
  network: z.string(),
  interface: z.string().describe('Interface name inside the container'),
  ipAddress: z.string().nullable(),
  prefixLength: z.number().int().nullable(),
  gateway: z.string().nullable(),
  macAddress: z.string().nullable(),
  aliases: z
    .array(z.string())
    .describe(
      'Names other containers on this network resolve to it (besides its id); empty where the network has no DNS',
    ),
});

export const ContainerNetworkState = z
  .object({
    networks: z
      .array(NetworkEndpoint)
      .describe('One per network; addresses are null while the container is not running'),
    ports: z.array(PortMapping),
  })
  .describe("The container's networks and published ports; absent for a container with network none");
export type ContainerNetworkState = z.infer<typeof ContainerNetworkState>;

/** The create body's network fields (POST /containers). */
export const ContainerNetworkFields = {
  networks: z
    .array(NetworkName)
    .min(1)
    .max(8)
    .optional()
    .describe(
      'Networks to attach (eth0, eth1, … in this order); ["none"] or absent: loopback only, as runc gives',
    ),
  ports: z.array(PortMappingRequest).max(64).optional().describe('Published ports (needs networks)'),
  aliases: z
    .array(DnsName)
    .max(32)
    .optional()
    .describe(
      "More names the container answers to on its user networks, besides its id (aardvark-dns; the hostname is not added: runc's spec template gives every container the hostname runc). The default network has no name resolution, as Docker's default bridge",
    ),
};
