import { mkdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isScope, SCOPES } from '../security/scopes.js';
import { issueToken, TokenError } from '../security/tokens.js';
import { openDatabase } from '../store/database.js';
import { TokenRepository } from '../store/token-repository.js';

/**
 * `runcd token create|list|revoke`: manages API tokens in the state dir's database, which the running daemon
 * reads on every request (so a new or revoked token counts at once, without a restart). Only root can read the
 * state dir, so only root can make tokens.
 */

export const TOKEN_USAGE = `usage: runcd token create --name NAME --scope read|operate|admin [--state-dir DIR]
       runcd token list [--state-dir DIR]
       runcd token revoke NAME [--state-dir DIR]
  read: GET everything (state, logs, events, wait); operate: also start, stop, kill, restart, pause, resume;
  admin: everything (create, exec, delete). The token is printed once, on stdout; only its hash is kept.`;

export interface CommandIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** Runs the subcommand; returns the process exit status (0 ok, 1 refused, 2 usage). */
export function runTokenCommand(argv: string[], env: NodeJS.ProcessEnv, io: CommandIo): number {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        name: { type: 'string' },
        scope: { type: 'string' },
        'state-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    io.err(`runcd token: ${(error as Error).message}\n${TOKEN_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [action, ...rest] = positionals;
  if (values.help || action === undefined) {
    (values.help ? io.out : io.err)(TOKEN_USAGE);
    return values.help ? 0 : 2;
  }
  const stateDir = values['state-dir'] ?? env.RUNCD_STATE_DIR ?? '/var/lib/runcd';
  if (!isAbsolute(stateDir)) {
    io.err(`runcd token: --state-dir must be an absolute path; got "${stateDir}"`);
    return 2;
  }
  const usage = (message: string) => {
    io.err(`runcd token ${action}: ${message}\n${TOKEN_USAGE}`);
    return 2;
  };
  if (action === 'create' && rest.length > 0) return usage(`unexpected argument "${rest[0]}"`);
  if (action === 'create' && !values.name) return usage('--name is required');
  if (action === 'create' && !(values.scope && isScope(values.scope))) {
    return usage(`--scope must be one of ${SCOPES.join(', ')}`);
  }
  if (action === 'revoke' && rest.length !== 1) return usage('give exactly one token name');
  if (action === 'list' && rest.length > 0) return usage(`unexpected argument "${rest[0]}"`);
  if (!['create', 'list', 'revoke'].includes(action))
    return usage('unknown action; use create, list or revoke');

  mkdirSync(resolve(stateDir), { recursive: true, mode: 0o700 });
  const db = openDatabase(join(resolve(stateDir), 'runcd.db'));
  try {
    const tokens = new TokenRepository(db);
    if (action === 'create') {
      const name = values.name!;
      const scope = values.scope as 'read' | 'operate' | 'admin';
      const secret = issueToken(tokens, name, scope);
      io.out(secret);
      io.err(`runcd: token "${name}" (scope ${scope}) created; it is shown only this once, so store it now`);
      return 0;
    }
    if (action === 'list') {
      for (const token of tokens.all()) io.out(`${token.name}\t${token.scope}\t${token.createdAt}`);
      return 0;
    }
    const name = rest[0]!;
    if (!tokens.remove(name)) {
      io.err(`runcd token revoke: no token named "${name}"`);
      return 1;
    }
    io.err(`runcd: token "${name}" revoked`);
    return 0;
  } catch (error) {
    if (error instanceof TokenError) {
      io.err(`runcd token ${action}: ${error.message}`);
      return 1;
    }
    throw error;
  } finally {
    db.close();
  }
}
