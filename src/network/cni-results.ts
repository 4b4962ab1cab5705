import type { CniResult } from '../runtime/cni.js';

export interface EndpointAddress {
  address: string | null;
  prefixLength: number | null;
  gateway: string | null;
  macAddress: string | null;
}

/** The address, gateway and MAC of interface `ifName` in a cached CNI ADD result (all null without one). */
export function endpointOf(result: CniResult | null | undefined, ifName: string): EndpointAddress {
  const ip = result?.ips?.find(
    (each) => each.interface === undefined || result.interfaces?.[each.interface]?.name === ifName,
  );
  const [address, prefix] = ip?.address.split('/') ?? [];
  const mac = result?.interfaces?.find((each) => each.name === ifName && each.sandbox)?.mac;
  return {
    address: address ?? null,
    prefixLength: prefix === undefined ? null : Number(prefix),
    gateway: ip?.gateway ?? null,
    macAddress: mac ?? null,
  };
}
