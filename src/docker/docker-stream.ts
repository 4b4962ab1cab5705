import type { PeerStream } from '../peer-stream.js';

/** Docker's stream ids in the 8-byte header of its multiplexed framing. */
export const STREAM_IDS = { stdin: 0, stdout: 1, stderr: 2 } as const;

/** One frame of Docker's multiplexed stream: [stream, 0, 0, 0, size (uint32 big-endian)] then the payload. */
export function frame(stream: keyof typeof STREAM_IDS, payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt8(STREAM_IDS[stream], 0);
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

/**
 * Takes over the connection for a raw stream, as Docker does for attach and exec: `101 UPGRADED` when the client
 * asked to upgrade to `tcp` (the docker CLI, dockerode with hijack), otherwise a 200 whose body runs until the
 * connection closes (dockerode without hijack).
 */
export function openRawStream(peer: PeerStream, upgrade: boolean, contentType: string): void {
  peer.write(
    upgrade
      ? `HTTP/1.1 101 UPGRADED\r\nContent-Type: ${contentType}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n`
      : `HTTP/1.1 200 OK\r\nContent-Type: ${contentType}\r\nConnection: close\r\n\r\n`,
  );
}
