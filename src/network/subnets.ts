import { isIPv4 } from 'node:net';

/** An IPv4 network in CIDR form, as numbers, so overlap and membership are arithmetic. */
export interface Ipv4Subnet {
  /** The network address (host bits zero). */
  base: number;
  prefix: number;
  cidr: string;
}

export function ipv4ToNumber(address: string): number {
  return address.split('.').reduce((value, octet) => value * 256 + Number(octet), 0);
}

export function numberToIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

function sizeOf(prefix: number): number {
  return 2 ** (32 - prefix);
}

/**
 * `10.87.0.0/24` → its numbers; undefined when it is not IPv4 CIDR or has host bits set (`10.87.0.1/24` is an
 * address, not a network: saying so beats silently using 10.87.0.0/24). Prefixes /8 to /29: a bridge subnet needs
 * room for a gateway and containers, and anything wider than /8 would swallow whole address classes.
 */
export function parseSubnet(cidr: string): Ipv4Subnet | undefined {
  const match = /^([0-9.]+)\/(\d{1,2})$/.exec(cidr);
  if (!match || !isIPv4(match[1]!)) return undefined;
  const prefix = Number(match[2]);
  if (prefix < 8 || prefix > 29) return undefined;
  const base = ipv4ToNumber(match[1]!);
  if (base % sizeOf(prefix) !== 0) return undefined;
  return { base, prefix, cidr: `${match[1]}/${prefix}` };
}

export function overlaps(a: Ipv4Subnet, b: Ipv4Subnet): boolean {
  return a.base < b.base + sizeOf(b.prefix) && b.base < a.base + sizeOf(a.prefix);
}

export function contains(subnet: Ipv4Subnet, address: string): boolean {
  if (!isIPv4(address)) return false;
  const value = ipv4ToNumber(address);
  return value >= subnet.base && value < subnet.base + sizeOf(subnet.prefix);
}

/** The first host address: the bridge's own (the containers' gateway). */
export function firstHost(subnet: Ipv4Subnet): string {
  return numberToIpv4(subnet.base + 1);
}

/** The network an interface address sits in (os.networkInterfaces gives address + netmask). */
export function subnetOfInterface(address: string, netmask: string): Ipv4Subnet | undefined {
  if (!isIPv4(address) || !isIPv4(netmask)) return undefined;
  const mask = ipv4ToNumber(netmask);
  let prefix = 0;
  for (let bit = 31; bit >= 0 && Math.floor(mask / 2 ** bit) % 2 === 1; bit--) prefix++;
  const size = sizeOf(prefix);
  const base = Math.floor(ipv4ToNumber(address) / size) * size;
  return { base, prefix, cidr: `${numberToIpv4(base)}/${prefix}` };
}
