import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { OciSpec } from '../runtime/oci.js';
import type { ContainerNetworkState } from '../schemas/network.js';
import { DNS_SEARCH_DOMAIN } from './container-dns.js';

const LOOPBACK_HOSTS = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n';

/**
 * /etc/hosts and /etc/resolv.conf for a container on networks: files of runcd's, bind-mounted read-only over the
 * container's own, so the caller's rootfs is never written (runc only creates an empty mount point when the rootfs
 * has no such file, as Docker and Podman do). hosts names the container's hostname at its first address, written
 * in place once the address is known (the bind mount follows the inode); resolv.conf is the host's minus loopback
 * servers, which would mean the container itself inside its namespace (Docker drops them too). On a user network
 * the nameservers are its gateways instead (aardvark-dns answers there, forwarding what it does not know to the
 * host's resolvers, loopback ones included, since it runs on the host), with runcd's search domain first, so a
 * resolver that appends search domains to a bare name (busybox nslookup asks only the appended forms) asks a
 * name aardvark answers itself.
 */
export class NameFiles {
  constructor(private readonly dir: string) {}

  async prepare(
    containerId: string,
    hostname: string | undefined,
    nameservers: string[],
  ): Promise<NonNullable<OciSpec['mounts']>> {
    const dir = join(this.dir, containerId);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await writeFile(join(dir, 'hosts'), LOOPBACK_HOSTS, { mode: 0o644 });
    await writeFile(join(dir, 'hostname'), `${hostname ?? containerId}\n`, { mode: 0o644 });
    await writeFile(join(dir, 'resolv.conf'), resolvConf(await hostResolvConf(), nameservers), {
      mode: 0o644,
    });
    return ['hosts', 'resolv.conf'].map((name) => ({
      destination: `/etc/${name}`,
      type: 'bind',
      source: join(dir, name),
      options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'],
    }));
  }

  async write(containerId: string, state: ContainerNetworkState | undefined): Promise<void> {
    const dir = join(this.dir, containerId);
    const hostname = (await readFile(join(dir, 'hostname'), 'utf8').catch(() => containerId)).trim();
    const address = state?.networks.find((endpoint) => endpoint.ipAddress)?.ipAddress;
    const names = hostname === containerId ? hostname : `${hostname} ${containerId}`;
    await writeFile(join(dir, 'hosts'), LOOPBACK_HOSTS + (address ? `${address}\t${names}\n` : ''));
  }

  /** resolv.conf again (another network joined or left), written in place: the bind mount follows the inode. */
  async rewriteResolvConf(containerId: string, nameservers: string[]): Promise<void> {
    await writeFile(
      join(this.dir, containerId, 'resolv.conf'),
      resolvConf(await hostResolvConf(), nameservers),
    );
  }

  async remove(containerId: string): Promise<void> {
    await rm(join(this.dir, containerId), { recursive: true, force: true });
  }
}

/** The host's resolv.conf for the default network; for user networks, their gateways and runcd's search domain first. */
function resolvConf(host: string, nameservers: string[]): string {
  if (nameservers.length === 0) return host;
  const lines = host.split('\n');
  const search = lines
    .filter((line) => /^\s*(search|domain)\s/.test(line))
    .flatMap((line) => line.trim().split(/\s+/).slice(1));
  const options = lines.filter((line) => /^\s*options\s/.test(line));
  return (
    [
      `search ${[DNS_SEARCH_DOMAIN, ...new Set(search)].join(' ')}`,
      ...nameservers.map((server) => `nameserver ${server}`),
      ...options.map((line) => line.trim()),
    ].join('\n') + '\n'
  );
}

async function hostResolvConf(): Promise<string> {
  const text = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  const kept = text
    .split('\n')
    .filter((line) => {
      const server = /^\s*nameserver\s+(\S+)/.exec(line)?.[1];
      return !server || !(server.startsWith('127.') || server === '::1');
    })
    .join('\n');
  return kept.endsWith('\n') || kept === '' ? kept : `${kept}\n`;
}
