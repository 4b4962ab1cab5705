import { createHash } from 'node:crypto';
import type { Container } from '../../schemas/container.js';
import type { Network, PortMappingRequest } from '../../schemas/network.js';
import { dockerIdOf } from '../docker-ids.js';
import { DockerError } from '../docker-errors.js';
import { defaultBridgeOf } from '../../network/network-service.js';

/** Docker's 64-hex network id: a hash of the name, so it is stable across restarts and unique per name. */
export function dockerNetworkIdOf(name: string): string {
  return createHash('sha256').update(`runcd-network:${name}`).digest('hex');
}

/** `docker network inspect` / `ls`: Docker's shape of a runcd network. */
export function dockerNetworkOf(
  network: Network,
  members: Container[],
  nameOf: (container: Container) => string = (container) => container.id,
): Record<string, unknown> {
  return {
    Name: network.name,
    Id: dockerNetworkIdOf(network.name),
    Created: network.created,
    Scope: 'local',
    Driver: 'bridge',
    EnableIPv4: true,
    EnableIPv6: false,
    IPAM: { Driver: 'default', Options: {}, Config: [{ Subnet: network.subnet, Gateway: network.gateway }] },
    Internal: false,
    Attachable: false,
    Ingress: false,
    ConfigFrom: { Network: '' },
    ConfigOnly: false,
    Containers: Object.fromEntries(
      members.map((container) => {
        const endpoint = container.network?.networks.find((each) => each.network === network.name);
        return [
          dockerIdOf(container.id),
          {
            Name: nameOf(container),
            EndpointID: '',
            MacAddress: endpoint?.macAddress ?? '',
            IPv4Address: endpoint?.ipAddress ? `${endpoint.ipAddress}/${endpoint.prefixLength}` : '',
            IPv6Address: '',
          },
        ];
      }),
    ),
    // Docker lists the bridge name only when it was chosen (-o com.docker.network.bridge.name=…); docker-compose
    // compares these options with its file's and refuses a network whose options it did not ask for.
    Options:
      network.bridge === defaultBridgeOf(network.name)
        ? {}
        : { 'com.docker.network.bridge.name': network.bridge },
    Labels: network.labels,
  };
}

/** Docker's NetworkMode for a runcd container: its first network, or none. */
export function networkModeOf(container: Container): string {
  return container.network?.networks[0]?.network ?? 'none';
}

/** `NetworkSettings` of `docker inspect` (and the Ports `docker port` reads). */
export function networkSettingsOf(container: Container): Record<string, unknown> {
  const endpoints = container.network?.networks ?? [];
  const first = endpoints.find((endpoint) => endpoint.ipAddress);
  return {
    Networks: Object.fromEntries(
      endpoints.map((endpoint) => [
        endpoint.network,
        {
          NetworkID: dockerNetworkIdOf(endpoint.network),
          EndpointID: '',
          Gateway: endpoint.gateway ?? '',
          IPAddress: endpoint.ipAddress ?? '',
          IPPrefixLen: endpoint.prefixLength ?? 0,
          MacAddress: endpoint.macAddress ?? '',
          Aliases: endpoint.aliases.length > 0 ? endpoint.aliases : null,
        },
      ]),
    ),
    Ports: portBindingsOf(container),
    IPAddress: first?.ipAddress ?? '',
    IPPrefixLen: first?.prefixLength ?? 0,
    Gateway: first?.gateway ?? '',
    MacAddress: first?.macAddress ?? '',
  };
}

/** `{"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "35477"}]}`, as Docker keys published ports. */
export function portBindingsOf(
  container: Container,
): Record<string, Array<{ HostIp: string; HostPort: string }>> {
  const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
  for (const port of container.network?.ports ?? []) {
    (bindings[`${port.containerPort}/${port.protocol}`] ??= []).push({
      HostIp: port.hostIp,
      HostPort: String(port.hostPort),
    });
  }
  return bindings;
}

/** The `Ports` column of `docker ps`. */
export function portSummaryOf(container: Container): Array<Record<string, unknown>> {
  return (container.network?.ports ?? []).map((port) => ({
    IP: port.hostIp,
    PrivatePort: port.containerPort,
    PublicPort: port.hostPort,
    Type: port.protocol,
  }));
}

interface PortBinding {
  HostIp?: unknown;
  HostPort?: unknown;
}

/**
 * `HostConfig.NetworkMode` + `PortBindings` + `NetworkingConfig.EndpointsConfig` → the native create's networks,
 * ports and aliases. A container is on the default network when it publishes ports; without them and without a
 * network of its own it keeps network none (runcd's default so far), so containers that never asked for a
 * network get none. On a user network it also answers to its Docker short id, as with Docker (docker-compose
 * looks for that alias to know a container is already connected), and to its --hostname.
 */
export function networkRequestOf(
  networkMode: unknown,
  portBindings: unknown,
  defaultNetwork: string | undefined,
  endpointsConfig?: unknown,
  shortId?: string,
  hostname?: string,
): { networks?: string[]; ports?: PortMappingRequest[]; aliases?: string[] } {
  const ports: PortMappingRequest[] = [];
  if (portBindings && typeof portBindings === 'object') {
    for (const [key, bindings] of Object.entries(portBindings as Record<string, unknown>)) {
      const match = /^(\d{1,5})(?:\/(tcp|udp))?$/.exec(key);
      if (!match) throw new DockerError(400, `invalid port "${key}": runcd publishes tcp and udp ports`);
      for (const binding of (Array.isArray(bindings) ? bindings : [{}]) as PortBinding[]) {
        const hostIp =
          typeof binding.HostIp === 'string' && binding.HostIp !== '' ? binding.HostIp : undefined;
        const hostPortText = typeof binding.HostPort === 'string' ? binding.HostPort : '';
        // `-p 8080-8085:80` arrives as HostPort "8080-8085": the first free one of them (the CLI itself splits
        // `-p 8080-8081:80-81` into one binding per port).
        const hostPorts = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(hostPortText);
        if (hostPortText !== '' && !hostPorts) {
          throw new DockerError(400, `invalid host port "${hostPortText}" for ${key}`);
        }
        ports.push({
          containerPort: Number(match[1]),
          protocol: (match[2] as 'tcp' | 'udp' | undefined) ?? 'tcp',
          ...(hostIp ? { hostIp } : {}),
          ...(hostPorts ? { hostPort: Number(hostPorts[1]) } : {}),
          ...(hostPorts?.[2] !== undefined && hostPorts[2] !== hostPorts[1]
            ? { hostPortEnd: Number(hostPorts[2]) }
            : {}),
        });
      }
    }
  }
  const endpoints =
    endpointsConfig && typeof endpointsConfig === 'object'
      ? (endpointsConfig as Record<string, { Aliases?: unknown } | null>)
      : {};
  const aliases = [
    ...new Set(
      Object.values(endpoints).flatMap((endpoint) =>
        Array.isArray(endpoint?.Aliases) ? endpoint.Aliases.map(String) : [],
      ),
    ),
  ];
  const mode = typeof networkMode === 'string' && networkMode !== '' ? networkMode : 'default';
  if (mode === 'host' || mode.startsWith('container:')) {
    throw new DockerError(
      403,
      `network mode ${mode} is refused: runcd gives each container its own network namespace`,
    );
  }
  if (mode === 'none') {
    if (ports.length > 0) throw new DockerError(400, 'published ports need a network, not --network none');
    return {};
  }
  if (mode === 'default' || mode === 'bridge') {
    if (aliases.length > 0) {
      throw new DockerError(
        400,
        'network-scoped alias is supported only for containers in user defined networks',
      );
    }
    if (ports.length === 0) return {};
    if (!defaultNetwork) throw new DockerError(501, 'this runcd has no networking configured');
    return { networks: [defaultNetwork], ports };
  }
  const others = Object.keys(endpoints).filter(
    (name) => name !== mode && name !== 'default' && name !== 'bridge',
  );
  return {
    networks: [mode, ...others],
    ...(ports.length > 0 ? { ports } : {}),
    aliases: [...new Set([...aliases, ...(shortId ? [shortId] : []), ...(hostname ? [hostname] : [])])],
  };
}
