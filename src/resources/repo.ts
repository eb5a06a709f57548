import { sql, type SelectQueryBuilder } from 'kysely';
import { Errors } from '../core/errors.js';
import { roleLevel, SYSTEM, type Principal } from '../core/tenancy.js';
import type { Db } from '../store/db.js';
import { noRows } from '../store/scope.js';
import { page, type Page, type PageParams } from '../store/page.js';

/**
 * Mail server and mailstore queries. Servers and stores are the provider's own infrastructure: provider
 * roles see all of them, every other role none (their ids answer 404, like objects of another tenant).
 */

type Q = SelectQueryBuilder<any, any, any>;

/** True for the roles that may see the resource registry at all. */
export const seesResources = (p: Principal): boolean => roleLevel(p.role) === 'provider';

export function serversQuery(db: Db, p: Principal): Q {
  const q = db.selectFrom('mail_servers').selectAll();
  return seesResources(p) ? q : noRows(q);
}

/**
 * Stores with `charged_bytes`: what the mailboxes (or folders) on the store are charged, summed over its
 * pieces (the (store_id, org_id) index serves it; a page holds at most 1,000 stores).
 */
export function storesQuery(db: Db, p: Principal): Q {
  const q = db.selectFrom('mailstores').selectAll('mailstores')
    .select(sql<number>`(SELECT COALESCE(SUM(a.charged_bytes), 0) FROM store_allocations a WHERE a.store_id = mailstores.id)`.as('charged_bytes'));
  return seesResources(p) ? q : noRows(q);
}

export async function getServer(db: Db, p: Principal, id: string): Promise<any> {
  const r = await serversQuery(db, p).where('id', '=', id).executeTakeFirst();
  if (!r) throw Errors.notFound(`mail server ${id} not found`);
  return r;
}

/** A store; with `serverId`, only when it is on that server (the nested routes). */
export async function getStore(db: Db, p: Principal, id: string, serverId?: string): Promise<any> {
  let q = storesQuery(db, p).where('id', '=', id);
  if (serverId !== undefined) q = q.where('server_id', '=', serverId);
  const r = await q.executeTakeFirst();
  if (!r) throw Errors.notFound(`mailstore ${id} not found${serverId ? ` on mail server ${serverId}` : ''}`);
  return r;
}

export function listServers(db: Db, p: Principal, f: PageParams): Promise<Page<any>> {
  return page(serversQuery(db, p), 'id', f);
}

export interface StoreFilter extends PageParams {
  purpose?: string;
  state?: string;
  server?: string;
}

/** Stores by id, filtered; served by the (server_id, id) and (purpose, state, id) indexes. */
export function listStores(db: Db, p: Principal, f: StoreFilter): Promise<Page<any>> {
  let q = storesQuery(db, p);
  if (f.server) q = q.where('server_id', '=', f.server);
  if (f.purpose) q = q.where('purpose', '=', f.purpose);
  if (f.state) q = q.where('state', '=', f.state);
  return page(q, 'id', f);
}

/** A store's row as the API shows it (with charged_bytes), for answers of procedures. */
export async function storeRow(db: Db, id: string): Promise<any> {
  return storesQuery(db, SYSTEM).where('id', '=', id).executeTakeFirstOrThrow();
}

/** The organizations holding allocation on a store, by organization id. */
export function storeConsumers(db: Db, p: Principal, storeId: string, f: PageParams): Promise<Page<any>> {
  const q = db.selectFrom('store_allocations').select(['org_id', 'reseller_id', 'bytes', 'charged_bytes', 'mailbox_count']).where('store_id', '=', storeId);
  return page(seesResources(p) ? q : noRows(q), 'org_id', f);
}

/** The mailboxes (or public folders, for a public-folder store) on a store, deleted ones awaiting purge included, by id. */
export function storeRecipients(db: Db, p: Principal, store: { id: string; purpose: string }, f: PageParams): Promise<Page<any>> {
  const q = store.purpose === 'mailbox'
    ? db.selectFrom('mailboxes').select(['id', 'org_id', 'primary_address as name', 'charged_bytes', 'state']).where('store_id', '=', store.id)
    : db.selectFrom('public_folders').select(['id', 'org_id', 'path as name', 'charged_bytes', sql<string>`'active'`.as('state')]).where('store_id', '=', store.id);
  return page(seesResources(p) ? q : noRows(q), 'id', f);
}

/** An organization's pieces on every store, with the store's server, name, purpose and sharing. */
export async function orgResources(db: Db, orgId: string): Promise<any[]> {
  return db.selectFrom('store_allocations as a').innerJoin('mailstores as s', 's.id', 'a.store_id')
    .select(['a.store_id', 's.server_id', 's.name', 's.purpose', 's.sharing', 's.state', 'a.bytes', 'a.charged_bytes', 'a.mailbox_count'])
    .where('a.org_id', '=', orgId).orderBy('s.purpose').orderBy('a.store_id').execute();
}
