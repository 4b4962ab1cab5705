import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { OciSpec } from '../runtime/oci.js';
import type { ContainerNetworkState } from '../schemas/network.js';

const LOOPBACK_HOSTS = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n';

/**
 * /etc/hosts and /etc/resolv.conf for a container on networks: files of runcd's, bind-mounted read-only over the
 * container's own, so the caller's rootfs is never written (runc only creates an empty mount point when the rootfs
 * has no such file, as Docker and Podman do). hosts names the container's hostname at its first address, written
 * in place once the address is known (the bind mount follows the inode); resolv.conf is the host's minus loopback
 * servers, which would mean the container itself inside its namespace (Docker drops them too).
 */
export class NameFiles {
  constructor(private readonly dir: string) {}

  async prepare(containerId: string, hostname: string | undefined): Promise<NonNullable<OciSpec['mounts']>> {
    const dir = join(this.dir, containerId);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await writeFile(join(dir, 'hosts'), LOOPBACK_HOSTS, { mode: 0o644 });
    await writeFile(join(dir, 'hostname'), `${hostname ?? containerId}\n`, { mode: 0o644 });
    await writeFile(join(dir, 'resolv.conf'), await hostResolvConf(), { mode: 0o644 });
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

  async remove(containerId: string): Promise<void> {
    await rm(join(this.dir, containerId), { recursive: true, force: true });
  }
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
