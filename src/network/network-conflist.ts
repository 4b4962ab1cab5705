import type { CniConflist } from '../runtime/cni.js';
import type { NetworkRecord } from '../store/network-repository.js';

/**
 * The conflist runcd writes for one of its networks, as measured working here (research Part B2):
 * - bridge with isGateway and ipMasq: the bridge holds the gateway address, traffic out is masqueraded; hairpin
 *   lets a container reach itself through its own published port.
 * - host-local IPAM in runcd's own data directory (not /var/lib/cni/networks), so each runcd (and each test's
 *   runcd) keeps its allocations apart and a leak check can list them.
 * - portmap for published ports (DNAT from PREROUTING and OUTPUT; it sets route_localnet=1 on the bridge so a
 *   127.0.0.1 port reaches the container).
 * - firewall: accepts the container's traffic in FORWARD, which matters on hosts whose FORWARD policy is DROP.
 * No loopback plugin: runc brings lo up itself in a new netns, and that plugin's DEL would take lo down inside a
 * container still running.
 */
export function conflistFor(network: NetworkRecord, ipamDir: string): CniConflist {
  return {
    cniVersion: '1.0.0',
    name: network.name,
    plugins: [
      {
        type: 'bridge',
        bridge: network.bridge,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          dataDir: ipamDir,
          routes: [{ dst: '0.0.0.0/0' }],
          ranges: [[{ subnet: network.subnet, gateway: network.gateway }]],
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'firewall' },
    ],
  };
}
