import type { Db, Dialect } from '../store/db.js';

/** Accepted-domain types as stored (mail/domains-model.ts ACCEPTED_TYPES). */
export type CachedDomainType = 'authoritative' | 'internal_relay' | 'external_relay';

/** One accepted domain or domain alias, as the transport agent needs it to place a sender or recipient. */
export interface CachedDomain {
  /** A-label, lower case (as stored). */
  readonly name: string;
  readonly domainId: string;
  readonly orgId: string;
  readonly resellerId: string;
  /** The organization is active under an active reseller (the data plane's dp_live_orgs): it sends and receives. */
  readonly live: boolean;
  /** The organization's own state: active, suspended or deleting. */
  readonly orgState: string;
  readonly type: CachedDomainType;
  /** A domain alias: the domain id and name it stands for (x@alias is x@aliasOfName), else null. */
  readonly aliasOfId: string | null;
  readonly aliasOfName: string | null;
}

/** Ids per IN (…) list: well under SQLite's 32,766 bound parameters and PostgreSQL's 65,535. */
export const SCOPE_CHUNK = 500;

/**
 * Rows per page of a full load, per database. better-sqlite3 reads synchronously: 100,000 rows in one statement
 * held the event loop (the agent's mail path) for the whole read, 0.8-1 s; pages of 2,000 with a yield between them
 * hold it ~45 ms at most, for the same total (5,000: ~100 ms). PostgreSQL's client parses rows as they arrive,
 * so pages only add round trips: 20,000 per page read 100,000 in 0.7-0.85 s, 2,000 in 1.15-1.3 s.
 */
export const FULL_PAGE: Record<Dialect, number> = { sqlite: 2_000, postgres: 20_000 };

type Interner = (s: string) => string;

/** Strings repeated across rows (organization and reseller ids, states, types) kept once. */
function interner(): Interner {
  const pool = new Map<string, string>();
  return (s) => {
    const had = pool.get(s);
    if (had !== undefined) return had;
    pool.set(s, s);
    return s;
  };
}

function baseQuery(db: Db) {
  return db
    .selectFrom('accepted_domains as d')
    .innerJoin('organizations as o', 'o.id', 'd.org_id')
    .leftJoin('accepted_domains as t', 't.domain_id', 'd.alias_of')
    .select(['d.name as name', 'd.domain_id as domain_id', 'd.org_id as org_id', 'o.reseller_id as reseller_id', 'o.state as org_state',
      'd.type as type', 'd.alias_of as alias_of', 't.name as alias_name']);
}

function toCached(r: Record<string, unknown>, live: boolean, intern: Interner): CachedDomain {
  return {
    name: r.name as string,
    domainId: r.domain_id as string,
    orgId: intern(r.org_id as string),
    resellerId: intern(r.reseller_id as string),
    live,
    orgState: intern(r.org_state as string),
    type: intern(r.type as string) as CachedDomainType,
    aliasOfId: (r.alias_of as string | null) ?? null,
    aliasOfName: (r.alias_name as string | null) ?? null,
  };
}

/**
 * Every accepted domain, in pages by name (the unique index on accepted_domains.name), yielding to the event loop
 * between pages. Liveness is read first, once, from the data plane's own definition: the view dp_live_orgs, so the
 * cache and Postfix's lookups never disagree about which tenants receive mail. Pages are read at different moments;
 * the cache stays right because whatever commits meanwhile reaches it through the change feed afterwards.
 */
export async function loadAllDomains(db: Db, pageSize: number): Promise<CachedDomain[]> {
  const live = new Set((await db.selectFrom('dp_live_orgs').select('id').execute()).map((r) => r.id as string));
  const intern = interner();
  const out: CachedDomain[] = [];
  let after: string | null = null;
  for (;;) {
    let q = baseQuery(db).orderBy('d.name').limit(pageSize);
    if (after !== null) q = q.where('d.name', '>', after);
    const rows = await q.execute();
    for (const r of rows) out.push(toCached(r, live.has(r.org_id as string), intern));
    if (rows.length < pageSize) return out;
    after = rows.at(-1)!.name as string;
    await new Promise((r) => setImmediate(r));
  }
}

/**
 * The accepted domains of some organizations, or of every organization of some resellers (ids in chunks of
 * SCOPE_CHUNK). Liveness per row by EXISTS on dp_live_orgs, which both databases answer by primary key (a LEFT
 * JOIN of the view makes SQLite materialize all of it, for a handful of rows).
 */
export async function loadDomains(db: Db, scope: { orgIds: readonly string[] } | { resellerIds: readonly string[] }): Promise<CachedDomain[]> {
  const byOrg = 'orgIds' in scope;
  const ids = byOrg ? scope.orgIds : scope.resellerIds;
  const intern = interner();
  const out: CachedDomain[] = [];
  for (let i = 0; i < ids.length; i += SCOPE_CHUNK) {
    const rows = await baseQuery(db)
      .select((eb) => eb.exists(eb.selectFrom('dp_live_orgs as l').select('l.id').whereRef('l.id', '=', 'd.org_id')).as('live'))
      .where(byOrg ? 'd.org_id' : 'o.reseller_id', 'in', ids.slice(i, i + SCOPE_CHUNK) as string[])
      .execute();
    // EXISTS is a boolean on PostgreSQL, 1/0 on SQLite
    for (const r of rows) out.push(toCached(r, r.live === true || r.live === 1, intern));
  }
  return out;
}
