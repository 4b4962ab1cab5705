/**
 * POSIX tar (ustar, with pax records for what ustar cannot hold: long names and link targets, large sizes and
 * ids) as blocks a generator yields one entry at a time, so an archive is produced only as fast as its reader
 * takes it (tar-stream's packer queues every header it is given, however slow the reader).
 */

export const BLOCK_BYTES = 512;

export type TarEntryType = 'file' | 'link' | 'symlink' | 'directory' | 'fifo' | 'char' | 'block';

export interface TarHeader {
  name: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: Date;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
}

const TYPE_FLAGS: Record<TarEntryType, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  char: '3',
  block: '4',
  directory: '5',
  fifo: '6',
};

/** The largest value an octal field of `width` bytes (with its NUL) holds. */
const fits = (value: number, width: number): boolean => value >= 0 && value < 8 ** (width - 1);

function putString(block: Buffer, offset: number, width: number, text: string): void {
  block.write(text, offset, Math.min(width, Buffer.byteLength(text)), 'utf8');
}

function putOctal(block: Buffer, offset: number, width: number, value: number): void {
  const digits = fits(value, width) ? Math.floor(value).toString(8) : '0';
  block.write(digits.padStart(width - 1, '0') + '\0', offset, width, 'ascii');
}

function ustarBlock(header: TarHeader, name: string, linkname: string): Buffer {
  const block = Buffer.alloc(BLOCK_BYTES);
  putString(block, 0, 100, name);
  putOctal(block, 100, 8, header.mode & 0o7777);
  putOctal(block, 108, 8, header.uid);
  putOctal(block, 116, 8, header.gid);
  putOctal(block, 124, 12, header.size);
  putOctal(block, 136, 12, Math.floor(header.mtime.getTime() / 1000));
  block.write(' '.repeat(8), 148, 8, 'ascii');
  block.write(TYPE_FLAGS[header.type], 156, 1, 'ascii');
  putString(block, 157, 100, linkname);
  block.write('ustar\u000000', 257, 8, 'ascii');
  putOctal(block, 329, 8, header.devmajor ?? 0);
  putOctal(block, 337, 8, header.devminor ?? 0);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return block;
}

/** One pax record, `LENGTH KEY=VALUE\n`, whose LENGTH counts its own digits. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length++;
  return `${length}${body}`;
}

/** Zero bytes that take `size` bytes of data to a whole number of blocks. */
export function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK_BYTES - (size % BLOCK_BYTES)) % BLOCK_BYTES);
}

/** The header block(s) of one entry: a pax extended header first when ustar alone cannot say it. */
export function headerBlocks(header: TarHeader): Buffer[] {
  const linkname = header.linkname ?? '';
  const records: string[] = [];
  if (Buffer.byteLength(header.name) > 100) records.push(paxRecord('path', header.name));
  if (Buffer.byteLength(linkname) > 100) records.push(paxRecord('linkpath', linkname));
  if (!fits(header.size, 12)) records.push(paxRecord('size', String(header.size)));
  if (!fits(header.uid, 8)) records.push(paxRecord('uid', String(header.uid)));
  if (!fits(header.gid, 8)) records.push(paxRecord('gid', String(header.gid)));
  // ustar's own fields then carry what fits (a truncated name is ignored by readers that saw the pax path).
  const name = Buffer.from(header.name).subarray(0, 100).toString('utf8');
  const link = Buffer.from(linkname).subarray(0, 100).toString('utf8');
  const main = ustarBlock(header, name, link);
  if (records.length === 0) return [main];
  const data = Buffer.from(records.join(''));
  const pax = ustarBlock(
    { name: 'PaxHeader', type: 'file', mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: header.mtime },
    'PaxHeader',
    '',
  );
  pax.write('x', 156, 1, 'ascii');
  // The type flag changed: the checksum is computed again.
  pax.write(' '.repeat(8), 148, 8, 'ascii');
  let sum = 0;
  for (const byte of pax) sum += byte;
  pax.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return [pax, data, padding(data.length), main];
}

/** The two zero blocks that end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK_BYTES);
