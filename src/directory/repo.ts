import type { SelectQueryBuilder } from 'kysely';
import { Errors } from '../core/errors.js';
import { roleLevel, type Principal } from '../core/tenancy.js';
import { runSql } from '../store/compiled.js';
import type { Db } from '../store/db.js';
import { page, type Page, type PageParams } from '../store/page.js';
import { escapeLike, prefixMatch } from '../store/prefix.js';
import { noRows, scopeRows } from '../store/scope.js';

/**
 * Directory queries. Every read takes the caller's principal and filters by its scope in SQL, so an
 * object outside the scope is indistinguishable from one that does not exist (404).
 */

type Q = SelectQueryBuilder<any, any, any>;

/** Filter rows of a tenant table (org_id, reseller_id columns) to the principal's scope; a user sees its organization's rows. */
export function inScope<T extends Q>(q: T, p: Principal, t = ''): T {
  return scopeRows(q, p, (x) => x.where(t ? `${t}.org_id` : 'org_id', '=', p.orgId) as T, t);
}

const nothing = noRows;

// ---- resellers ----
export function resellersQuery(db: Db, p: Principal): Q {
  const q = db.selectFrom('resellers').selectAll();
  const level = roleLevel(p.role);
  if (level === 'provider') return q;
  if (level === 'reseller') return q.where('id', '=', p.resellerId);
  return nothing(q);
}

export async function getReseller(db: Db, p: Principal, id: string): Promise<any> {
  const r = await resellersQuery(db, p).where('id', '=', id).executeTakeFirst();
  if (!r) throw Errors.notFound(`reseller ${id} not found`);
  return r;
}

export function listResellers(db: Db, p: Principal, f: PageParams & { state?: string; q?: string }): Promise<Page<any>> {
  let q = resellersQuery(db, p);
  if (f.state) q = q.where('state', '=', f.state);
  if (f.q) q = q.where('name', 'like', `${escapeLike(f.q)}%`);
  return page(q, 'id', f);
}

// ---- organizations ----
export function organizationsQuery(db: Db, p: Principal): Q {
  const q = db.selectFrom('organizations').selectAll();
  const level = roleLevel(p.role);
  if (level === 'provider') return q;
  if (level === 'reseller') return q.where('reseller_id', '=', p.resellerId);
  return q.where('id', '=', p.orgId);
}

/**
 * Whether the caller can see organization `id`: organizationsQuery's scope as fixed SQL text, since every
 * call on a path under /organizations/{orgId} asks it first (store/compiled.ts).
 */
export async function organizationVisible(db: Db, p: Principal, id: string): Promise<boolean> {
  const level = roleLevel(p.role);
  if (level === 'reseller') return (await runSql(db, 'SELECT id FROM organizations WHERE id = ? AND reseller_id = ?', [id, p.resellerId])).rows.length > 0;
  if (level !== 'provider' && id !== p.orgId) return false;
  return (await runSql(db, 'SELECT id FROM organizations WHERE id = ?', [id])).rows.length > 0;
}

export async function getOrganization(db: Db, p: Principal, id: string): Promise<any> {
  const r = await organizationsQuery(db, p).where('id', '=', id).executeTakeFirst();
  if (!r) throw Errors.notFound(`organization ${id} not found`);
  return r;
}

export function listOrganizations(db: Db, p: Principal, f: PageParams & { reseller?: string; state?: string; q?: string }): Promise<Page<any>> {
  let q = organizationsQuery(db, p);
  if (f.reseller) q = q.where('reseller_id', '=', f.reseller);
  if (f.state) q = q.where('state', '=', f.state);
  if (f.q) q = q.where('name', 'like', `${escapeLike(f.q)}%`);
  return page(q, 'id', f);
}

/** An organization the caller may change: visible, and not on its way out. */
export async function getLiveOrganization(db: Db, p: Principal, id: string): Promise<any> {
  const org = await getOrganization(db, p, id);
  if (org.state === 'deleting') throw Errors.stateConflict(`organization ${id} is being deleted`);
  return org;
}

// ---- domains ----
export async function getDomain(db: Db, p: Principal, orgId: string, id: string): Promise<any> {
  const r = await inScope(db.selectFrom('domains').selectAll(), p).where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
  if (!r || roleLevel(p.role) === 'user') throw Errors.notFound(`domain ${id} not found`);
  return r;
}

export function listDomains(db: Db, p: Principal, orgId: string, f: PageParams & { q?: string }): Promise<Page<any>> {
  let q = inScope(db.selectFrom('domains').selectAll(), p).where('org_id', '=', orgId);
  if (roleLevel(p.role) === 'user') q = nothing(q);
  if (f.q) q = q.where('name', 'like', `${escapeLike(f.q)}%`);
  return page(q, 'id', f);
}

// ---- users ----
function usersQuery(db: Db, p: Principal): Q {
  let q = inScope(db.selectFrom('users').selectAll(), p);
  if (roleLevel(p.role) === 'user') q = q.where('id', '=', p.userId);
  return q;
}

export async function getUser(db: Db, p: Principal, orgId: string, id: string): Promise<any> {
  const r = await usersQuery(db, p).where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
  if (!r) throw Errors.notFound(`user ${id} not found`);
  return r;
}

export function listUsers(
  db: Db,
  p: Principal,
  orgId: string,
  f: PageParams & { q?: string; enabled?: boolean; state?: string; role?: string; domainId?: string },
): Promise<Page<any>> {
  let q = usersQuery(db, p).where('org_id', '=', orgId);
  if (f.q) q = prefixMatch(db, q, 'login', f.q.toLowerCase());
  if (f.enabled !== undefined) q = q.where('enabled', '=', f.enabled ? 1 : 0);
  if (f.state) q = q.where('state', '=', f.state);
  if (f.role) q = q.where('role', '=', f.role);
  if (f.domainId) q = q.where('domain_id', '=', f.domainId);
  return page(q, 'id', f);
}

// ---- groups ----
function groupsQuery(db: Db, p: Principal): Q {
  const q = inScope(db.selectFrom('groups').selectAll(), p);
  return roleLevel(p.role) === 'user' ? nothing(q) : q;
}

export async function getGroup(db: Db, p: Principal, orgId: string, id: string): Promise<any> {
  const r = await groupsQuery(db, p).where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
  if (!r) throw Errors.notFound(`group ${id} not found`);
  return r;
}

export function listGroups(db: Db, p: Principal, orgId: string, f: PageParams & { q?: string }): Promise<Page<any>> {
  let q = groupsQuery(db, p).where('org_id', '=', orgId);
  if (f.q) q = q.where('name', 'like', `${escapeLike(f.q)}%`);
  return page(q, 'id', f);
}

export async function listMembers(db: Db, p: Principal, orgId: string, groupId: string, f: PageParams): Promise<Page<any>> {
  await getGroup(db, p, orgId, groupId);
  const q = db
    .selectFrom('group_members as m')
    .innerJoin('users as u', 'u.id', 'm.user_id')
    .select(['u.id as id', 'u.login as login', 'u.display_name as display_name'])
    .where('m.group_id', '=', groupId)
    .where('m.org_id', '=', orgId);
  return page(q, 'u.id', f);
}

// ---- tokens ----
export function tokensQuery(db: Db, p: Principal): Q {
  return scopeRows(db.selectFrom('tokens').selectAll(), p, (q) => q.where('user_id', '=', p.userId));
}

export async function getToken(db: Db, p: Principal, id: string): Promise<any> {
  const r = await tokensQuery(db, p).where('id', '=', id).executeTakeFirst();
  if (!r) throw Errors.notFound(`token ${id} not found`);
  return r;
}

export function listTokens(db: Db, p: Principal, f: PageParams & { includeRevoked?: boolean }): Promise<Page<any>> {
  let q = tokensQuery(db, p);
  if (!f.includeRevoked) q = q.where('revoked_at', 'is', null);
  return page(q, 'id', f);
}

export { escapeLike };
