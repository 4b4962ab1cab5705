import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';

/**
 * Whether a host port is free, asked the only way that covers every process on the host: binding it (and closing
 * again at once). portmap's DNAT binds nothing, so ports published by runcd's own containers are checked against
 * the store by the caller, not here. Bound to the address the mapping names, as the DNAT rule will match it.
 */
export async function bindProbe(
  hostIp: string,
  port: number,
  protocol: 'tcp' | 'udp',
): Promise<number | undefined> {
  if (protocol === 'udp') {
    return new Promise((resolve) => {
      const socket = createSocket('udp4');
      socket.once('error', () => {
        socket.close();
        resolve(undefined);
      });
      socket.bind({ address: hostIp, port, exclusive: true }, () => {
        const bound = socket.address().port;
        socket.close(() => resolve(bound));
      });
    });
  }
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen({ host: hostIp, port, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}
