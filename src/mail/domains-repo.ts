import type { SelectQueryBuilder } from 'kysely';
import { Errors } from '../core/errors.js';
import { roleLevel, type Principal } from '../core/tenancy.js';
import { inScope } from '../directory/repo.js';
import type { Db } from '../store/db.js';
import { page, type Page, type PageParams } from '../store/page.js';
import { noRows } from '../store/scope.js';

/** Accepted and shared domain queries, scoped like the directory's domains (a user role sees none). */

type Q = SelectQueryBuilder<any, any, any>;

export function acceptedQuery(db: Db, p: Principal): Q {
  const q = inScope(db.selectFrom('accepted_domains').selectAll(), p);
  return roleLevel(p.role) === 'user' ? q.where('domain_id', '=', '') : q;
}

export async function getAccepted(db: Db, p: Principal, orgId: string, domainId: string): Promise<any> {
  const r = await acceptedQuery(db, p).where('org_id', '=', orgId).where('domain_id', '=', domainId).executeTakeFirst();
  if (!r) throw Errors.notFound(`domain ${domainId} is not an accepted domain of this organization`);
  return r;
}

export function listAccepted(db: Db, p: Principal, orgId: string, f: PageParams & { type?: string; q?: string }): Promise<Page<any>> {
  let q = acceptedQuery(db, p).where('org_id', '=', orgId);
  if (f.type) q = q.where('type', '=', f.type);
  if (f.q) q = q.where('name', 'like', `${f.q.toLowerCase().replace(/[%_\\]/g, '')}%`);
  // page() orders and seeks by `id`: the view's key is domain_id, exposed under that name for the cursor
  return page(q.select('domain_id as id'), 'domain_id', f);
}

/** Shared domains are the provider's: only provider roles see them (organizations name one by id). */
export function sharedQuery(db: Db, p: Principal): Q {
  const q = db.selectFrom('shared_domains').selectAll();
  return roleLevel(p.role) === 'provider' ? q : noRows(q);
}

export async function getShared(db: Db, p: Principal, id: string): Promise<any> {
  const r = await sharedQuery(db, p).where('id', '=', id).executeTakeFirst();
  if (!r) throw Errors.notFound(`shared domain ${id} not found`);
  return r;
}

export function listShared(db: Db, p: Principal, f: PageParams & { q?: string }): Promise<Page<any>> {
  let q = sharedQuery(db, p);
  if (f.q) q = q.where('name', 'like', `${f.q.toLowerCase().replace(/[%_\\]/g, '')}%`);
  return page(q, 'id', f);
}
