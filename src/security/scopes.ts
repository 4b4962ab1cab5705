import type { TokenScope } from '../store/token-repository.js';

/** Token scopes, nested: admin can do what operate can, operate what read can. Routes declare theirs. */

export const SCOPES: readonly TokenScope[] = ['read', 'operate', 'admin'];

const RANK: Readonly<Record<TokenScope, number>> = { read: 1, operate: 2, admin: 3 };

export function scopeAllows(granted: TokenScope, required: TokenScope): boolean {
  return RANK[granted] >= RANK[required];
}

export function isScope(value: string): value is TokenScope {
  return (SCOPES as readonly string[]).includes(value);
}
