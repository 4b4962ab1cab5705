import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { TokenRecord, TokenRepository, TokenScope } from '../store/token-repository.js';

/**
 * Bearer tokens. A secret is 32 random bytes (256 bits); only its SHA-256 is stored. A slow password hash
 * (scrypt, argon2) exists to protect low-entropy secrets from guessing; a 256-bit random secret cannot be
 * guessed, so one SHA-256 is enough, and it keeps authentication cheap on every request. The presented secret's
 * hash is compared with every stored hash by crypto.timingSafeEqual, with no early exit, so timing reveals
 * neither which token matched nor how much of a hash did.
 */

export const TOKEN_PREFIX = 'rcd_';
export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function generateTokenSecret(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export function hashTokenSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** `Authorization: Bearer <secret>` → the secret; anything else → undefined. */
export function bearerSecret(header: string): string | undefined {
  const match = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i.exec(header);
  return match?.[1];
}

export class TokenAuthenticator {
  constructor(private readonly tokens: TokenRepository) {}

  /** The token the secret belongs to; read from the store each time, so a revocation counts at once. */
  authenticate(secret: string): TokenRecord | undefined {
    const presented = hashTokenSecret(secret);
    let match: TokenRecord | undefined;
    for (const record of this.tokens.all()) {
      const equal = record.hash.length === presented.length && timingSafeEqual(record.hash, presented);
      if (equal && !match) match = record;
    }
    return match;
  }
}

export class TokenError extends Error {
  override name = 'TokenError';
}

/** Creates a token and returns its secret, which exists nowhere else afterwards. */
export function issueToken(tokens: TokenRepository, name: string, scope: TokenScope): string {
  if (!TOKEN_NAME_PATTERN.test(name)) {
    throw new TokenError(
      `token name "${name}" must be 1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit`,
    );
  }
  if (tokens.exists(name)) throw new TokenError(`token "${name}" already exists; revoke it first`);
  const secret = generateTokenSecret();
  tokens.insert({ name, scope, hash: hashTokenSecret(secret), createdAt: new Date().toISOString() });
  return secret;
}
