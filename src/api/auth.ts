import type { FastifyRequest } from 'fastify';
import { Errors } from '../core/errors.js';
import { isRole, type Principal } from '../core/tenancy.js';
import { runSql } from '../store/compiled.js';
import type { Db } from '../store/db.js';
import { hashToken } from '../directory/procedures.js';

/**
 * `Authorization: Bearer <token>` to a principal. Tokens are looked up by their SHA-256 on every call
 * (one indexed read), so a revocation takes effect at once on every API process. The read is fixed
 * SQL text (store/compiled.ts) and, on SQLite, never waits for a commit (store/sqlite-driver.ts).
 */
export async function authenticate(db: Db, req: FastifyRequest): Promise<Principal> {
  const h = req.headers.authorization;
  const m = typeof h === 'string' ? /^Bearer\s+(\S{1,200})$/i.exec(h) : null;
  if (!m) throw Errors.unauthorized('send Authorization: Bearer <token>');
  const row = (await runSql<TokenRow>(db, TOKEN_BY_HASH, [hashToken(m[1]!)])).rows[0];
  const now = Date.now();
  if (!row || row.revoked_at !== null || (row.expires_at !== null && Number(row.expires_at) <= now) || !isRole(row.role)) {
    throw Errors.unauthorized('the token is unknown, revoked or expired');
  }
  if (row.user_id) {
    // a user's own token stops working when the user is disabled or deleted
    const u = (await runSql<{ enabled: number; state: string }>(db, 'SELECT enabled, state FROM users WHERE id = ?', [row.user_id])).rows[0];
    if (!u || Number(u.enabled) !== 1 || u.state !== 'active') throw Errors.unauthorized('the token\'s user is disabled');
  }
  return { tokenId: row.id, role: row.role, resellerId: row.reseller_id, orgId: row.org_id, userId: row.user_id, actor: `token:${row.name}` };
}

const TOKEN_BY_HASH = 'SELECT id, name, role, reseller_id, org_id, user_id, revoked_at, expires_at FROM tokens WHERE token_hash = ?';

interface TokenRow {
  id: string;
  name: string;
  role: string;
  reseller_id: string | null;
  org_id: string | null;
  user_id: string | null;
  revoked_at: number | null;
  expires_at: number | null;
}
