/**
 * Detach keys: the key sequence that leaves an attached terminal without touching the container, in Docker's
 * syntax (`--detach-keys`, `detachKeys`): a comma-separated list of keys, each either one character (`a`, `q`)
 * or `ctrl-X` for X in a-z, @, [, \, ], ^ or _ (its control code: ctrl-a is 1, ctrl-@ 0, ctrl-_ 31). Docker's
 * default is ctrl-p,ctrl-q.
 */

export const DEFAULT_DETACH_KEYS = 'ctrl-p,ctrl-q';

const CONTROL_KEYS = ['@', ...'abcdefghijklmnopqrstuvwxyz', '[', '\\', ']', '^', '_'];

/** The bytes of a detach sequence (empty: the default), or an Error naming the key it cannot read. */
export function parseDetachKeys(text: string): Uint8Array {
  if (text === '') return parseDetachKeys(DEFAULT_DETACH_KEYS);
  const codes: number[] = [];
  for (const key of text.split(',')) {
    if (key.length === 1 && key.charCodeAt(0) < 128) {
      codes.push(key.charCodeAt(0));
      continue;
    }
    const control = /^ctrl-(.)$/i.exec(key);
    const index = control ? CONTROL_KEYS.indexOf(control[1]!.toLowerCase()) : -1;
    if (index < 0) {
      throw new Error(
        `unknown detach key "${key}": use one character or ctrl-X (X one of a-z, @, [, \\, ], ^, _), comma-separated, e.g. ${DEFAULT_DETACH_KEYS}`,
      );
    }
    codes.push(index);
  }
  return Uint8Array.from(codes);
}

/**
 * Watches a stream of keystrokes for the detach sequence. Bytes that may begin the sequence are held back until
 * it is clear they do not (then they go on, in order, as Docker's escape proxy does); once the whole sequence
 * has been typed, `detached` is true and nothing more is forwarded: the sequence itself never reaches the
 * container.
 */
export class DetachKeyScanner {
  private matched = 0;
  detached = false;

  constructor(private readonly keys: Uint8Array) {}

  /** What of `data` goes to the container now. */
  scan(data: Buffer): Buffer {
    const keys = this.keys;
    if (this.detached) return Buffer.alloc(0);
    if (keys.length === 0 || (this.matched === 0 && !data.includes(keys[0]!))) return data;
    const out: number[] = [];
    for (const byte of data) {
      if (byte === keys[this.matched]) {
        this.matched++;
        if (this.matched === keys.length) {
          this.detached = true;
          this.matched = 0;
          break;
        }
        continue;
      }
      // Not the sequence after all: what was held goes on, and this byte may begin the sequence again.
      for (let index = 0; index < this.matched; index++) out.push(keys[index]!);
      this.matched = 0;
      if (byte === keys[0]) {
        this.matched = 1;
        if (keys.length === 1) {
          this.detached = true;
          this.matched = 0;
          break;
        }
      } else out.push(byte);
    }
    return Buffer.from(out);
  }
}
