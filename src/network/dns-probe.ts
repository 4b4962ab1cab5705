import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';

/**
 * One DNS A query over UDP to `server`:53, answered with the IPv4 addresses of the reply (empty for NXDOMAIN or
 * no answer), undefined when nothing answered in time. Used to know that aardvark-dns serves a container's name
 * before the container starts: a reload (SIGHUP) is asynchronous and says nothing when it is done.
 * Only names under runcd's own search domain are asked, which aardvark answers or refuses itself, never forwards.
 */
export async function queryA(server: string, name: string, timeoutMs: number): Promise<string[] | undefined> {
  const id = randomInt(0, 0x10000);
  const question = Buffer.concat([
    ...name
      .replace(/\.$/, '')
      .split('.')
      .map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, 'ascii')])),
    Buffer.from([0, 0, 1, 0, 1]), // root label, QTYPE A, QCLASS IN
  ]);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2); // recursion desired
  header.writeUInt16BE(1, 4); // one question
  const query = Buffer.concat([header, question]);
  const socket = createSocket('udp4');
  return new Promise((resolve) => {
    const finish = (answer: string[] | undefined) => {
      clearTimeout(timer);
      socket.close();
      resolve(answer);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    socket.on('error', () => finish(undefined));
    socket.on('message', (message) => {
      if (message.length < 12 || message.readUInt16BE(0) !== id) return;
      finish(addressesOf(message));
    });
    socket.send(query, 53, server);
  });
}

function addressesOf(message: Buffer): string[] {
  const answers = message.readUInt16BE(6);
  let offset = skipName(message, 12) + 4;
  const addresses: string[] = [];
  for (let index = 0; index < answers && offset < message.length; index++) {
    offset = skipName(message, offset);
    if (offset + 10 > message.length) break;
    const type = message.readUInt16BE(offset);
    const length = message.readUInt16BE(offset + 8);
    offset += 10;
    if (type === 1 && length === 4 && offset + 4 <= message.length) {
      addresses.push([...message.subarray(offset, offset + 4)].join('.'));
    }
    offset += length;
  }
  return addresses;
}

/** The offset after a (possibly compressed) name. */
function skipName(message: Buffer, start: number): number {
  let offset = start;
  while (offset < message.length) {
    const length = message[offset]!;
    if (length === 0) return offset + 1;
    if ((length & 0xc0) === 0xc0) return offset + 2;
    offset += length + 1;
  }
  return offset;
}
