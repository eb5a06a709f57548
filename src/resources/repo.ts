import type { SelectQueryBuilder } from 'kysely';
import { Errors } from '../core/errors.js';
import { roleLevel, type Principal } from '../core/tenancy.js';
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

export function storesQuery(db: Db, p: Principal): Q {
  const q = db.selectFrom('mailstores').selectAll();
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
