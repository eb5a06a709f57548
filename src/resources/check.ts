import { sql, type RawBuilder } from 'kysely';
import type { Db, Dialect } from '../store/db.js';
import { allocationOf, effectiveMailboxSettings, type MailboxOverrides } from '../plans/limits.js';

/**
 * `hmc check` for the Resource Manager: verifies, read-only, that every stored total equals the sum of its
 * parts and that the inequalities of DESIGN §3 hold (charged ≤ allocated ≤ capacity):
 *
 *   org_subscriptions counters      = counts and charges of the organization's rows (mailboxes, folders, ...)
 *   sum of an org's pieces (pool)   = its allocation (allocationOf)
 *   a piece's charged/mailbox_count = charges and count of the recipients placed on that store
 *   a store's allocated/count       = sums of its pieces; ≤ capacity / max_mailboxes
 *   a dedicated store's owner       = the one organization with pieces on it (shared: none)
 *   a mailbox's charge              = its plan's prohibitSendReceiveQuota with its overrides (0 once deleted)
 *
 * Every query is set-based (GROUP BY over the table, one pass each), so the check reads the same handful of
 * queries at 1,000 stores and 1,000,000 mailboxes; the per-row work in JS is over organizations, pieces and
 * stores, and over the rows already found wrong. Sums are read as text and compared as BigInt: a SUM of
 * bytes may pass 2^53 (that is itself drift) and must not round.
 */

/** Stable finding codes (persisted in scripts: never rename, add new ones). */
export const CHECK_CODES = {
  /** An org_subscriptions counter (field) differs from the count/sum of its rows. */
  orgCounterDrift: 'org_counter_drift',
  /** The sum of an organization's pieces in a pool (field) differs from its allocation. */
  allocationDrift: 'allocation_drift',
  /** An organization is charged more than its allocation (fixed allocations). */
  orgOverAllocation: 'org_over_allocation',
  /** A piece's charged_bytes or mailbox_count (field) differs from its recipients. */
  pieceDrift: 'piece_drift',
  /** The recipients placed on a piece are charged more than the piece holds. */
  pieceOverAllocation: 'piece_over_allocation',
  /** A piece of an organization that has no subscription. */
  pieceWithoutSubscription: 'piece_without_subscription',
  /** A store's allocated_bytes or mailbox_count (field) differs from the sum of its pieces. */
  storeDrift: 'store_drift',
  /** The pieces on a store add up to more than its capacity. */
  storeOverCapacity: 'store_over_capacity',
  /** More mailboxes (or folders) are counted on a store than its max_mailboxes. */
  storeOverMaxMailboxes: 'store_over_max_mailboxes',
  /** A store's owner_org_id is not the organization its pieces belong to (dedicated) or not null (shared). */
  storeOwnerDrift: 'store_owner_drift',
  /** A dedicated store holds pieces of several organizations. */
  dedicatedStoreShared: 'dedicated_store_shared',
  /** A mailbox's charged_bytes does not follow its plan (and overrides), or a deleted one is still charged. */
  mailboxChargeDrift: 'mailbox_charge_drift',
  /** Active mailboxes on no store (store_id NULL) or on a store where their organization has no piece. */
  mailboxesUnplaced: 'mailboxes_unplaced',
  /** A public folder's charged_bytes is not its prohibitPostQuota. */
  folderChargeDrift: 'folder_charge_drift',
  /** Public folders on no store or on a store where their organization has no public-folder piece. */
  foldersUnplaced: 'folders_unplaced',
  // the data plane (dataplane/check.ts), for the mail servers rendered under HMC_DATAPLANE_ROOT
  /** An active mailbox placed on a server whose Dovecot does not resolve it. */
  dataplaneUserUnresolvable: 'dataplane_user_unresolvable',
  /** A name a server's Dovecot serves that no active mailbox placed there has. */
  dataplaneUnexpectedUser: 'dataplane_user_unexpected',
  /** Dovecot's quota limit for a mailbox is not its prohibitSendReceiveQuota. */
  dataplaneQuotaDrift: 'dataplane_quota_rule_drift',
  /** Dovecot's quota counter differs from the mailbox's real size. */
  dataplaneUsageDrift: 'dataplane_usage_drift',
  /** A mailbox directory on a store that no mailbox owns. */
  dataplaneOrphanMaildir: 'dataplane_orphan_maildir',
  /** doveadm could not be asked. */
  dataplaneUnreachable: 'dataplane_unreachable',
} as const;
export type CheckCode = (typeof CHECK_CODES)[keyof typeof CHECK_CODES];

/** A figure: a number while exact in a double, else its decimal string; an id for owners; null for none. */
export type Figure = number | string | null;

export interface Finding {
  code: CheckCode;
  orgId: string | null;
  storeId: string | null;
  /** The mailbox or public folder concerned, when one row is. */
  objectId: string | null;
  /** The column (or counter) that is wrong. */
  field: string;
  stored: Figure;
  expected: Figure;
  /** True when `--repair` (resources.repair_organization / repair_store) can fix it through the engine. */
  repairable: boolean;
  message: string;
}

export interface CheckReport {
  ok: boolean;
  findings: Finding[];
}

type Pool = 'mailbox' | 'public_folder';

/* eslint-disable @typescript-eslint/no-explicit-any */
const big = (v: unknown): bigint => (v === null || v === undefined ? 0n : BigInt(String(v)));
const MAX_EXACT = BigInt(Number.MAX_SAFE_INTEGER);
export const figure = (v: bigint): Figure => (v <= MAX_EXACT && v >= -MAX_EXACT ? Number(v) : v.toString());
const sumText = (col: string): RawBuilder<string> => sql<string>`CAST(COALESCE(SUM(${sql.ref(col)}), 0) AS TEXT)`;
const countText = (): RawBuilder<string> => sql<string>`CAST(COUNT(*) AS TEXT)`;
const key = (orgId: string, storeId: string | null) => `${orgId}|${storeId ?? ''}`;

export interface Sum {
  n: bigint;
  bytes: bigint;
}
const ZERO: Sum = { n: 0n, bytes: 0n };

/** Count and charged bytes of the counted recipients (active mailboxes, all folders) per (org, store). */
export async function recipientSums(db: Db, pool: Pool, orgId?: string): Promise<{ orgId: string; storeId: string | null; sum: Sum }[]> {
  const table = pool === 'mailbox' ? 'mailboxes' : 'public_folders';
  let q = db.selectFrom(`${table} as r`).select(['r.org_id', 'r.store_id', countText().as('n'), sumText('r.charged_bytes').as('bytes')]).groupBy(['r.org_id', 'r.store_id']);
  if (pool === 'mailbox') q = q.where('r.state', '=', 'active');
  if (orgId !== undefined) q = q.where('r.org_id', '=', orgId);
  const rows = await q.execute();
  return rows.map((r: any) => ({ orgId: r.org_id, storeId: r.store_id ?? null, sum: { n: big(r.n), bytes: big(r.bytes) } }));
}

/** Rows per organization of a table the subscription counts (domains, groups, contacts). */
async function countsByOrg(db: Db, table: string, orgId?: string): Promise<Map<string, bigint>> {
  let q = db.selectFrom(table).select(['org_id', countText().as('n')]).groupBy('org_id');
  if (orgId !== undefined) q = q.where('org_id', '=', orgId);
  return new Map((await q.execute()).map((r: any) => [r.org_id as string, big(r.n)]));
}

/** What an organization's subscription counters should hold, from its rows. */
export interface OrgActuals {
  mailbox_count: bigint;
  mailbox_bytes: bigint;
  public_folder_count: bigint;
  public_folder_bytes: bigint;
  domain_count: bigint;
  group_count: bigint;
  contact_count: bigint;
}
export const COUNTERS: (keyof OrgActuals)[] = ['mailbox_count', 'mailbox_bytes', 'public_folder_count', 'public_folder_bytes', 'domain_count', 'group_count', 'contact_count'];

/** The true counters of every organization (or one), from GROUP BY queries over its rows. */
export async function orgActuals(db: Db, orgId?: string): Promise<{ actuals: Map<string, OrgActuals>; mailboxes: Awaited<ReturnType<typeof recipientSums>>; folders: Awaited<ReturnType<typeof recipientSums>> }> {
  const mailboxes = await recipientSums(db, 'mailbox', orgId);
  const folders = await recipientSums(db, 'public_folder', orgId);
  const domains = await countsByOrg(db, 'accepted_domains', orgId);
  const groups = await countsByOrg(db, 'mail_groups', orgId);
  const contacts = await countsByOrg(db, 'contacts', orgId);
  const actuals = new Map<string, OrgActuals>();
  const of = (id: string): OrgActuals => {
    let a = actuals.get(id);
    if (!a) {
      a = { mailbox_count: 0n, mailbox_bytes: 0n, public_folder_count: 0n, public_folder_bytes: 0n, domain_count: 0n, group_count: 0n, contact_count: 0n };
      actuals.set(id, a);
    }
    return a;
  };
  for (const g of mailboxes) {
    of(g.orgId).mailbox_count += g.sum.n;
    of(g.orgId).mailbox_bytes += g.sum.bytes;
  }
  for (const g of folders) {
    of(g.orgId).public_folder_count += g.sum.n;
    of(g.orgId).public_folder_bytes += g.sum.bytes;
  }
  for (const [id, n] of domains) of(id).domain_count = n;
  for (const [id, n] of groups) of(id).group_count = n;
  for (const [id, n] of contacts) of(id).contact_count = n;
  return { actuals, mailboxes, folders };
}

/** An override of prohibitSendReceiveQuota in the mailbox's overrides JSON (NULL when none), in SQL. */
function overrideQuota(dialect: Dialect): RawBuilder<unknown> {
  // most mailboxes have no overrides: skip parsing their JSON
  return dialect === 'postgres'
    ? sql`CASE WHEN m.overrides = '{}' THEN NULL ELSE CAST(CAST(m.overrides AS jsonb) ->> 'prohibitSendReceiveQuota' AS NUMERIC) END`
    : sql`CASE WHEN m.overrides = '{}' THEN NULL ELSE json_extract(m.overrides, '$.prohibitSendReceiveQuota') END`;
}

export interface MailboxChargeDrift {
  mailboxId: string;
  orgId: string;
  storeId: string | null;
  active: boolean;
  stored: bigint;
  expected: bigint;
}

/**
 * Mailboxes whose charge is not what their plan (with their overrides) gives, or deleted ones still charged.
 * SQL narrows to the candidates with the same formula (override ?? plan), then each is computed again with
 * effectiveMailboxSettings, the one formula the procedures use.
 */
export async function mailboxChargeDrift(db: Db, dialect: Dialect, orgId?: string): Promise<MailboxChargeDrift[]> {
  let q = db.selectFrom('mailboxes as m').innerJoin('mailbox_plans as p', 'p.id', 'm.mailbox_plan_id')
    .select(['m.id', 'm.org_id', 'm.store_id', 'm.state', 'm.charged_bytes', 'm.overrides', 'm.mailbox_plan_id'])
    .where((eb) => eb.or([
      eb.and([eb('m.state', '=', 'active'), sql<boolean>`m.charged_bytes <> COALESCE(${overrideQuota(dialect)}, p.prohibit_send_receive_quota)`]),
      eb.and([eb('m.state', '<>', 'active'), eb('m.charged_bytes', '<>', 0)]),
    ]))
    .orderBy('m.id');
  if (orgId !== undefined) q = q.where('m.org_id', '=', orgId);
  const rows = await q.execute();
  if (rows.length === 0) return [];
  const planIds = [...new Set(rows.map((r: any) => r.mailbox_plan_id as string))];
  const plans = new Map<string, any>();
  for (let i = 0; i < planIds.length; i += 500) {
    for (const p of await db.selectFrom('mailbox_plans').selectAll().where('id', 'in', planIds.slice(i, i + 500)).execute()) plans.set(p.id, p);
  }
  const out: MailboxChargeDrift[] = [];
  for (const r of rows as any[]) {
    const active = r.state === 'active';
    let expected = 0n;
    if (active) {
      const overrides = JSON.parse(r.overrides) as MailboxOverrides;
      const plan = plans.get(r.mailbox_plan_id);
      try {
        expected = BigInt(effectiveMailboxSettings(plan, overrides).prohibitSendReceiveQuota);
      } catch {
        // overrides out of Exchange order with the current plan: the charge is still the quota they give
        expected = BigInt(overrides.prohibitSendReceiveQuota ?? Number(plan.prohibit_send_receive_quota));
      }
    }
    const stored = big(r.charged_bytes);
    if (stored !== expected) out.push({ mailboxId: r.id, orgId: r.org_id, storeId: r.store_id ?? null, active, stored, expected });
  }
  return out;
}

export interface FolderChargeDrift {
  folderId: string;
  orgId: string;
  storeId: string | null;
  stored: bigint;
  expected: bigint;
}

/** Public folders whose charge is not their prohibitPostQuota (folderCharge). */
export async function folderChargeDrift(db: Db, orgId?: string): Promise<FolderChargeDrift[]> {
  let q = db.selectFrom('public_folders').select(['id', 'org_id', 'store_id', 'charged_bytes', 'prohibit_post_quota'])
    .whereRef('charged_bytes', '<>', 'prohibit_post_quota').orderBy('id');
  if (orgId !== undefined) q = q.where('org_id', '=', orgId);
  return (await q.execute()).map((r: any) => ({ folderId: r.id, orgId: r.org_id, storeId: r.store_id ?? null, stored: big(r.charged_bytes), expected: big(r.prohibit_post_quota) }));
}

/** The pieces of every organization (or one) with the purpose of their store. */
export async function pieceRows(db: Db, orgId?: string): Promise<{ orgId: string; storeId: string; pool: Pool; bytes: bigint; charged: bigint; count: bigint }[]> {
  let q = db.selectFrom('store_allocations as a').innerJoin('mailstores as s', 's.id', 'a.store_id')
    .select(['a.org_id', 'a.store_id', 's.purpose', 'a.bytes', 'a.charged_bytes', 'a.mailbox_count']).orderBy('a.org_id').orderBy('a.store_id');
  if (orgId !== undefined) q = q.where('a.org_id', '=', orgId);
  return (await q.execute()).map((r: any) => ({ orgId: r.org_id, storeId: r.store_id, pool: r.purpose, bytes: big(r.bytes), charged: big(r.charged_bytes), count: big(r.mailbox_count) }));
}

/** Totals of the pieces on every store: bytes, counted recipients, organizations (and the first). */
export async function storePieceSums(db: Db, storeId?: string): Promise<Map<string, { bytes: bigint; count: bigint; orgs: number; firstOrg: string | null }>> {
  let q = db.selectFrom('store_allocations')
    .select(['store_id', sumText('bytes').as('bytes'), sumText('mailbox_count').as('n'), sql<string>`CAST(COUNT(DISTINCT org_id) AS TEXT)`.as('orgs'), sql<string>`MIN(org_id)`.as('first_org')])
    .groupBy('store_id');
  if (storeId !== undefined) q = q.where('store_id', '=', storeId);
  return new Map((await q.execute()).map((r: any) => [r.store_id as string, { bytes: big(r.bytes), count: big(r.n), orgs: Number(r.orgs), firstOrg: r.first_org ?? null }]));
}

const finding = (f: Omit<Finding, 'orgId' | 'storeId' | 'objectId'> & Partial<Pick<Finding, 'orgId' | 'storeId' | 'objectId'>>): Finding =>
  ({ code: f.code, orgId: f.orgId ?? null, storeId: f.storeId ?? null, objectId: f.objectId ?? null, field: f.field, stored: f.stored, expected: f.expected, repairable: f.repairable, message: f.message });

/** Run every check over the whole platform. Read-only; `db` may be a transaction. */
export async function runCheck(db: Db, dialect: Dialect): Promise<CheckReport> {
  const findings: Finding[] = [];
  // one query after another: `db` may be a transaction, which is one connection
  const subs = await db.selectFrom('org_subscriptions as s').innerJoin('org_plans as p', 'p.id', 's.org_plan_id')
    .select(['s.org_id', 's.storage_override', 's.grown_bytes', ...COUNTERS.map((c) => `s.${c}` as const),
      'p.storage_bytes', 'p.dynamic_storage', 'p.public_folder_bytes as plan_public_folder_bytes'])
    .orderBy('s.org_id').execute();
  const { actuals, mailboxes, folders } = await orgActuals(db);
  const pieces = await pieceRows(db);
  const stores = await db.selectFrom('mailstores').selectAll().orderBy('id').execute();
  const storeSums = await storePieceSums(db);
  const mailboxCharges = await mailboxChargeDrift(db, dialect);
  const folderCharges = await folderChargeDrift(db);

  // ---- organizations: counters, allocation ----
  const placed = new Map<string, { mailbox: bigint; public_folder: bigint }>();
  for (const p of pieces) {
    const t = placed.get(p.orgId) ?? { mailbox: 0n, public_folder: 0n };
    t[p.pool] += p.bytes;
    placed.set(p.orgId, t);
  }
  const subscribed = new Set<string>();
  for (const r of subs as any[]) {
    const orgId = r.org_id as string;
    subscribed.add(orgId);
    const a = actuals.get(orgId);
    for (const c of COUNTERS) {
      const stored = big(r[c]);
      const expected = a ? a[c] : 0n;
      if (stored !== expected) {
        findings.push(finding({ code: CHECK_CODES.orgCounterDrift, orgId, field: c, stored: figure(stored), expected: figure(expected), repairable: true,
          message: `organization ${orgId}: ${c} is ${stored}, its rows add up to ${expected}` }));
      }
    }
    const alloc = allocationOf({ sub: r, plan: { storage_bytes: r.storage_bytes, dynamic_storage: r.dynamic_storage, public_folder_bytes: r.plan_public_folder_bytes } });
    const held = placed.get(orgId) ?? { mailbox: 0n, public_folder: 0n };
    for (const [pool, field, want] of [['mailbox', 'mailbox_bytes', alloc.mailboxBytes], ['public_folder', 'public_folder_bytes', alloc.publicFolderBytes]] as const) {
      if (held[pool] !== BigInt(want)) {
        findings.push(finding({ code: CHECK_CODES.allocationDrift, orgId, field, stored: figure(held[pool]), expected: want, repairable: true,
          message: `organization ${orgId}: its ${pool} pieces hold ${held[pool]} bytes, its allocation is ${want}` }));
      }
    }
    const charged = a?.mailbox_bytes ?? 0n;
    if (!alloc.dynamic && charged > BigInt(alloc.mailboxBytes)) {
      findings.push(finding({ code: CHECK_CODES.orgOverAllocation, orgId, field: 'mailbox_bytes', stored: figure(charged), expected: alloc.mailboxBytes, repairable: false,
        message: `organization ${orgId}: its mailboxes are charged ${charged} bytes, more than its allocation of ${alloc.mailboxBytes}` }));
    }
    const pfCharged = a?.public_folder_bytes ?? 0n;
    if (pfCharged > BigInt(alloc.publicFolderBytes)) {
      findings.push(finding({ code: CHECK_CODES.orgOverAllocation, orgId, field: 'public_folder_bytes', stored: figure(pfCharged), expected: alloc.publicFolderBytes, repairable: false,
        message: `organization ${orgId}: its public folders are charged ${pfCharged} bytes, more than its pool of ${alloc.publicFolderBytes}` }));
    }
  }

  // ---- pieces: charges and counts of the recipients on them ----
  const onStore = { mailbox: new Map<string, Sum>(), public_folder: new Map<string, Sum>() };
  for (const g of mailboxes) onStore.mailbox.set(key(g.orgId, g.storeId), g.sum);
  for (const g of folders) onStore.public_folder.set(key(g.orgId, g.storeId), g.sum);
  const pieceKeys = { mailbox: new Set<string>(), public_folder: new Set<string>() };
  for (const p of pieces) {
    pieceKeys[p.pool].add(key(p.orgId, p.storeId));
    const at = { orgId: p.orgId, storeId: p.storeId };
    if (!subscribed.has(p.orgId)) {
      findings.push(finding({ ...at, code: CHECK_CODES.pieceWithoutSubscription, field: 'org_id', stored: p.orgId, expected: null, repairable: false,
        message: `organization ${p.orgId} holds ${p.bytes} bytes on store ${p.storeId} but has no subscription` }));
    }
    const s = onStore[p.pool].get(key(p.orgId, p.storeId)) ?? ZERO;
    const what = p.pool === 'mailbox' ? 'mailboxes' : 'public folders';
    const fits = s.bytes <= p.bytes;
    if (p.charged !== s.bytes) {
      findings.push(finding({ ...at, code: CHECK_CODES.pieceDrift, field: 'charged_bytes', stored: figure(p.charged), expected: figure(s.bytes), repairable: fits,
        message: `piece of ${p.orgId} on store ${p.storeId}: charged_bytes is ${p.charged}, its ${what} are charged ${s.bytes}` }));
    }
    if (p.count !== s.n) {
      findings.push(finding({ ...at, code: CHECK_CODES.pieceDrift, field: 'mailbox_count', stored: figure(p.count), expected: figure(s.n), repairable: true,
        message: `piece of ${p.orgId} on store ${p.storeId}: mailbox_count is ${p.count}, ${s.n} ${what} are on it` }));
    }
    if (!fits) {
      findings.push(finding({ ...at, code: CHECK_CODES.pieceOverAllocation, field: 'bytes', stored: figure(p.bytes), expected: figure(s.bytes), repairable: false,
        message: `piece of ${p.orgId} on store ${p.storeId} holds ${p.bytes} bytes; its ${what} there are charged ${s.bytes}` }));
    }
  }
  // recipients counted on no piece of their organization
  for (const [pool, groups, code] of [['mailbox', mailboxes, CHECK_CODES.mailboxesUnplaced], ['public_folder', folders, CHECK_CODES.foldersUnplaced]] as const) {
    for (const g of groups) {
      if (g.storeId !== null && pieceKeys[pool].has(key(g.orgId, g.storeId))) continue;
      const what = pool === 'mailbox' ? 'active mailbox(es)' : 'public folder(s)';
      findings.push(finding({ orgId: g.orgId, storeId: g.storeId, code, field: 'store_id', stored: figure(g.sum.n), expected: 0, repairable: true,
        message: g.storeId === null
          ? `organization ${g.orgId}: ${g.sum.n} ${what} (${g.sum.bytes} bytes) are on no store`
          : `organization ${g.orgId}: ${g.sum.n} ${what} (${g.sum.bytes} bytes) are on store ${g.storeId}, where it has no ${pool} piece` }));
    }
  }

  // ---- recipients: charges that do not follow their plan ----
  for (const m of mailboxCharges) {
    findings.push(finding({ orgId: m.orgId, storeId: m.storeId, objectId: m.mailboxId, code: CHECK_CODES.mailboxChargeDrift, field: 'charged_bytes', stored: figure(m.stored), expected: figure(m.expected), repairable: true,
      message: m.active
        ? `mailbox ${m.mailboxId} is charged ${m.stored} bytes; its plan gives ${m.expected}`
        : `mailbox ${m.mailboxId} is deleted but still charged ${m.stored} bytes` }));
  }
  for (const f of folderCharges) {
    findings.push(finding({ orgId: f.orgId, storeId: f.storeId, objectId: f.folderId, code: CHECK_CODES.folderChargeDrift, field: 'charged_bytes', stored: figure(f.stored), expected: figure(f.expected), repairable: true,
      message: `public folder ${f.folderId} is charged ${f.stored} bytes; its prohibitPostQuota is ${f.expected}` }));
  }

  // ---- stores: totals, capacity, owner ----
  for (const st of stores as any[]) {
    const sum = storeSums.get(st.id) ?? { bytes: 0n, count: 0n, orgs: 0, firstOrg: null };
    const at = { storeId: st.id as string };
    const capacity = big(st.capacity_bytes);
    const allocated = big(st.allocated_bytes);
    const count = big(st.mailbox_count);
    const over = sum.bytes > capacity;
    if (allocated !== sum.bytes) {
      findings.push(finding({ ...at, code: CHECK_CODES.storeDrift, field: 'allocated_bytes', stored: figure(allocated), expected: figure(sum.bytes), repairable: !over,
        message: `store ${st.id}: allocated_bytes is ${allocated}, its pieces add up to ${sum.bytes}` }));
    }
    if (over) {
      findings.push(finding({ ...at, code: CHECK_CODES.storeOverCapacity, field: 'capacity_bytes', stored: figure(capacity), expected: figure(sum.bytes), repairable: false,
        message: `store ${st.id}: its pieces add up to ${sum.bytes} bytes, more than its capacity of ${capacity}` }));
    }
    if (count !== sum.count) {
      findings.push(finding({ ...at, code: CHECK_CODES.storeDrift, field: 'mailbox_count', stored: figure(count), expected: figure(sum.count), repairable: true,
        message: `store ${st.id}: mailbox_count is ${count}, its pieces count ${sum.count}` }));
    }
    if (st.max_mailboxes !== null && st.max_mailboxes !== undefined && sum.count > big(st.max_mailboxes)) {
      findings.push(finding({ ...at, code: CHECK_CODES.storeOverMaxMailboxes, field: 'max_mailboxes', stored: figure(big(st.max_mailboxes)), expected: figure(sum.count), repairable: false,
        message: `store ${st.id}: ${sum.count} mailboxes are counted on it, more than its max_mailboxes of ${st.max_mailboxes}` }));
    }
    const owner: string | null = st.owner_org_id ?? null;
    if (st.sharing === 'dedicated' && sum.orgs > 1) {
      findings.push(finding({ ...at, orgId: owner, code: CHECK_CODES.dedicatedStoreShared, field: 'owner_org_id', stored: owner, expected: null, repairable: false,
        message: `dedicated store ${st.id} holds pieces of ${sum.orgs} organizations` }));
    } else {
      const expected = st.sharing === 'dedicated' ? sum.firstOrg : null;
      if (owner !== expected) {
        findings.push(finding({ ...at, orgId: owner ?? expected, code: CHECK_CODES.storeOwnerDrift, field: 'owner_org_id', stored: owner, expected, repairable: true,
          message: st.sharing === 'dedicated'
            ? `dedicated store ${st.id}: owner is ${owner ?? 'none'}, its pieces belong to ${expected ?? 'no organization'}`
            : `shared store ${st.id} names an owner (${owner})` }));
      }
    }
  }
  return { ok: findings.length === 0, findings };
}
