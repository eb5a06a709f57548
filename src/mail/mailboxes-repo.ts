import type { SelectQueryBuilder } from 'kysely';
import { Errors } from '../core/errors.js';
import { roleLevel, type Principal } from '../core/tenancy.js';
import { inScope } from '../directory/repo.js';
import type { ProcContext } from '../engine/procedure.js';
import type { Db } from '../store/db.js';
import { prefixMatch } from '../store/prefix.js';
import { page, type Page, type PageParams } from '../store/page.js';
import { toMailbox, type MailboxView } from './mailboxes-model.js';

/**
 * Mailbox queries, scoped: provider, reseller and organization roles see their scope's mailboxes; a user
 * sees only its own mailbox (the one linked to it). Lists page by id on (org_id, id); filters use
 * (org_id, primary_address), (org_id, kind, id) and (org_id, state, id).
 */

type Q = SelectQueryBuilder<any, any, any>;

export function mailboxesQuery(db: Db, p: Principal): Q {
  let q = inScope(db.selectFrom('mailboxes').selectAll(), p);
  if (roleLevel(p.role) === 'user') q = q.where('user_id', '=', p.userId ?? '');
  return q;
}

export async function getMailbox(db: Db, p: Principal, orgId: string, id: string): Promise<any> {
  const r = await mailboxesQuery(db, p).where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
  if (!r) throw Errors.notFound(`mailbox ${id} not found`);
  return r;
}

/**
 * A mailbox of the organization for a change, locked for the rest of the transaction (PostgreSQL FOR UPDATE:
 * two changes of one mailbox, e.g. a delete and an alias, run one after the other). Call after `liveOrg`.
 */
export async function lockMailbox(ctx: Pick<ProcContext, 'tx' | 'dialect' | 'principal'>, orgId: string, id: string, state: 'active' | 'deleted' = 'active'): Promise<any> {
  let q = mailboxesQuery(ctx.tx, ctx.principal).where('org_id', '=', orgId).where('id', '=', id);
  if (ctx.dialect === 'postgres') q = q.forUpdate();
  const r = await q.executeTakeFirst();
  if (!r) throw Errors.notFound(`mailbox ${id} not found`);
  if (r.state !== state) throw Errors.stateConflict(state === 'active' ? `mailbox ${id} is deleted; restore it first` : `mailbox ${id} is not deleted`);
  return r;
}

/** Aliases (addresses other than the primary one) of each mailbox, in address order; one indexed query. */
export async function aliasesOf(db: Db, ids: string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>(ids.map((id) => [id, []]));
  if (ids.length === 0) return out;
  const rows = await db.selectFrom('addresses').select(['recipient_id', 'address']).where('recipient_id', 'in', ids).where('is_primary', '=', 0).orderBy('address').execute();
  for (const r of rows) out.get(r.recipient_id)?.push(r.address);
  return out;
}

/** The API view of one mailbox row. */
export async function viewOf(db: Db, row: any): Promise<MailboxView> {
  return toMailbox(row, (await aliasesOf(db, [row.id])).get(row.id)!);
}

export async function listMailboxes(
  db: Db,
  p: Principal,
  orgId: string,
  f: PageParams & { q?: string; kind?: string; state?: string; userId?: string },
): Promise<Page<MailboxView>> {
  let q = mailboxesQuery(db, p).where('org_id', '=', orgId);
  if (f.q) q = prefix(db, q, 'primary_address', f.q.toLowerCase());
  if (f.kind) q = q.where('kind', '=', f.kind);
  if (f.state) q = q.where('state', '=', f.state);
  if (f.userId) q = q.where('user_id', '=', f.userId);
  const got = await page(q, 'id', f);
  const aliases = await aliasesOf(db, got.items.map((r) => r.id as string));
  return { items: got.items.map((r) => toMailbox(r, aliases.get(r.id)!)), next: got.next };
}

/** Prefix match on a lower-case column (see store/prefix.ts). */
export const prefix = prefixMatch;
