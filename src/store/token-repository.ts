import type { Db } from './database.js';

export type TokenScope = 'read' | 'operate' | 'admin';

export interface TokenRecord {
  name: string;
  scope: TokenScope;
  /** SHA-256 of the secret. */
  hash: Buffer;
  createdAt: string;
}

interface TokenRow {
  name: string;
  scope: string;
  hash: Buffer;
  created_at: string;
}

function fromRow(row: TokenRow): TokenRecord {
  return { name: row.name, scope: row.scope as TokenScope, hash: row.hash, createdAt: row.created_at };
}

/**
 * The tokens table. Revoking deletes the row, so a revoked secret matches nothing from the next request on:
 * the daemon reads this table on every authenticated request, and the CLI writes it from another process.
 */
export class TokenRepository {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      all: db.prepare<[], TokenRow>('SELECT name, scope, hash, created_at FROM tokens ORDER BY name'),
      insert: db.prepare<[string, string, Buffer, string]>(
        'INSERT INTO tokens (name, scope, hash, created_at) VALUES (?, ?, ?, ?)',
      ),
      exists: db.prepare<[string], { name: string }>('SELECT name FROM tokens WHERE name = ?'),
      remove: db.prepare<[string]>('DELETE FROM tokens WHERE name = ?'),
    };
  }

  all(): TokenRecord[] {
    return this.statements.all.all().map(fromRow);
  }

  exists(name: string): boolean {
    return this.statements.exists.get(name) !== undefined;
  }

  insert(record: TokenRecord): void {
    this.statements.insert.run(record.name, record.scope, record.hash, record.createdAt);
  }

  /** Returns whether a token by that name existed. */
  remove(name: string): boolean {
    return this.statements.remove.run(name).changes > 0;
  }
}
