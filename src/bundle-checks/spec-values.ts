import { posix, sep } from 'node:path';

/** Shapes of values in a caller's config.json, which is parsed JSON of any shape until checked. */

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

/** Strictly inside `dir` (not equal to it). */
export function isInside(path: string, dir: string): boolean {
  return path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/** `//proc/./self/../1/` → `/proc/1`: how the kernel will see an absolute path, symlinks aside. */
export function normalizeAbsolute(path: string): string {
  const normal = posix.normalize(path.replace(/\/+/g, '/'));
  return normal.length > 1 ? normal.replace(/\/$/, '') : normal;
}
