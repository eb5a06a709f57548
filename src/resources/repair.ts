import { Type } from '@sinclair/typebox';
import { sql } from 'kysely';
import { Errors, isHmcError } from '../core/errors.js';
import { lockOrg } from '../directory/procedures.js';
import { defineProcedure, type ProcContext } from '../engine/procedure.js';
import { Id } from '../engine/http.js';
import { withSavepoint } from '../engine/tx-runner.js';
import { allocationOf, charge, lockSubscription, type Subscription } from '../plans/limits.js';
import { resettleMailbox } from '../mail/reapply.js';
import { toStore } from './model.js';
import { orgPieces, placeRecipient, syncAllocation, type Pool } from './placement.js';
import { CHECK_CODES, COUNTERS, figure, folderChargeDrift, mailboxChargeDrift, orgActuals, pieceRows, runCheck, storePieceSums, type Finding } from './check.js';

/**
 * `hmc check --repair`: brings drifted totals back to the sums of their parts through the engine, as audited
 * procedures (provider admins only):
 *
 * - resources.repair_organization: under the organization's subscription lock, charges above what the plan
 *   gives come down, its counters and its pieces' charges and counts are recomputed from its rows (a store's
 *   count moves by the same difference, so a store that was right stays right), recipients on no piece are
 *   placed (placeRecipient), mailboxes whose charge did not follow their plan are settled again by the
 *   RESETTLE_MAILBOX procedure, and the pieces are made to add up to the allocation again (syncAllocation).
 * - resources.repair_store: a store's totals and owner from its pieces.
 * - resources.repair: runs the check and starts one batch request of resources.repair_step items, the
 *   organizations first and then the stores (items of a batch run in order): store totals are sums of pieces,
 *   which the organization repairs may change. Every store the repaired organizations hold pieces on is in it.
 *
 * What a recount cannot fix (a piece or store over-committed, a dedicated store of two organizations, a
 * mailbox the allocation has no room for) is left as it is and named in the item's result; the check after
 * the repair still reports it.
 */

/** Persisted procedure ids (never rename). */
export const REPAIR = {
  start: 'resources.repair',
  step: 'resources.repair_step',
  organization: 'resources.repair_organization',
  store: 'resources.repair_store',
} as const;

const strict = { additionalProperties: false } as const;
const ORG = { orgId: Id('org') };
const STORE = { storeId: Id('mst') };
/** Repairs are the provider's: their audit records carry no tenant scope (they name stores, which tenants never see). */
const target = (type: string, id: string) => ({ type, id, resellerId: null, orgId: null });

/** Something a repair step could not fix, named in its result. */
export interface Unresolved {
  what: string;
  id: string;
  code: string;
  message: string;
}

/* eslint-disable @typescript-eslint/no-explicit-any */

/**
 * Run one step of a repair in a savepoint: when it fails it is undone and named in the result, and the other
 * steps go on. Drifted rows can trip the database's own constraints (a store total that would go below zero),
 * which is a reason to leave that part for the operator, not to give up the whole organization.
 */
async function attempt(ctx: ProcContext, unresolved: Unresolved[], what: string, id: string, fn: () => Promise<void>): Promise<boolean> {
  try {
    await withSavepoint(ctx.tx, fn);
    return true;
  } catch (e) {
    if (isHmcError(e)) unresolved.push({ what, id, code: e.code, message: e.message });
    else {
      ctx.log.warn({ err: e, what, id }, 'repair step failed');
      unresolved.push({ what, id, code: Errors.internal.code, message: e instanceof Error ? e.message : String(e) });
    }
    return false;
  }
}

/** An organization's counters, pieces and the recipients the repair touches, for the audit diff. */
async function orgState(ctx: ProcContext, orgId: string, touched: { mailboxes: string[]; folders: string[] }): Promise<unknown> {
  const sub = await ctx.tx.selectFrom('org_subscriptions').select([...COUNTERS, 'grown_bytes']).where('org_id', '=', orgId).executeTakeFirst();
  const pieces = (await pieceRows(ctx.tx, orgId)).map((p) => ({ storeId: p.storeId, pool: p.pool, bytes: figure(p.bytes), chargedBytes: figure(p.charged), mailboxCount: figure(p.count) }));
  const counters = sub ? Object.fromEntries(Object.entries(sub).map(([k, v]) => [k, Number(v)])) : null;
  const rows = async (table: 'mailboxes' | 'public_folders', ids: string[]) => {
    const out: { id: string; chargedBytes: number; storeId: string | null }[] = [];
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = await ctx.tx.selectFrom(table).select(['id', 'charged_bytes', 'store_id']).where('id', 'in', ids.slice(i, i + 500)).orderBy('id').execute();
      out.push(...chunk.map((r: any) => ({ id: r.id, chargedBytes: Number(r.charged_bytes), storeId: r.store_id ?? null })));
    }
    return out;
  };
  return { counters, pieces, mailboxes: await rows('mailboxes', touched.mailboxes), publicFolders: await rows('public_folders', touched.folders) };
}

/** Recipients of the organization counted on none of its pieces of `pool` (store_id NULL or a store without its piece). */
async function unplaced(ctx: ProcContext, orgId: string, pool: Pool): Promise<{ id: string; charged: number }[]> {
  const table = pool === 'mailbox' ? 'mailboxes' : 'public_folders';
  let q = ctx.tx.selectFrom(`${table} as r`).select(['r.id', 'r.charged_bytes']).where('r.org_id', '=', orgId)
    .where((eb) => eb.not(eb.exists(eb.selectFrom('store_allocations as a').innerJoin('mailstores as s', 's.id', 'a.store_id').select('a.store_id')
      .whereRef('a.org_id', '=', 'r.org_id').whereRef('a.store_id', '=', 'r.store_id').where('s.purpose', '=', pool))))
    .orderBy('r.id');
  if (pool === 'mailbox') q = q.where('r.state', '=', 'active');
  return (await q.execute()).map((r: any) => ({ id: r.id, charged: Number(r.charged_bytes) }));
}

/** Make the pieces of `pool` add up to the allocation; a shrink over several pieces takes from the freest first. */
async function resync(ctx: ProcContext, s: Subscription, pool: Pool): Promise<void> {
  const alloc = allocationOf(s);
  const target = BigInt(pool === 'mailbox' ? alloc.mailboxBytes : alloc.publicFolderBytes);
  const { pieces } = await orgPieces(ctx.tx, s.sub.org_id, pool);
  const held = pieces.reduce((sum, p) => sum + BigInt(p.bytes), 0n);
  if (held <= target || pieces.filter((p) => p.bytes > 0).length <= 1) return syncAllocation(ctx, s, pool);
  let excess = held - target;
  const sources: { storeId: string; bytes: number }[] = [];
  for (const p of [...pieces].sort((a, b) => (b.bytes - b.chargedBytes) - (a.bytes - a.chargedBytes) || (a.storeId < b.storeId ? -1 : 1))) {
    const free = BigInt(Math.max(0, p.bytes - p.chargedBytes));
    const take = free < excess ? free : excess;
    if (take > 0n) sources.push({ storeId: p.storeId, bytes: Number(take) });
    excess -= take;
    if (excess === 0n) break;
  }
  if (excess > 0n) throw Errors.storageLimit(`the organization's ${pool} pieces hold ${held} bytes, its allocation is ${target}, and its charges leave too little free to give back`);
  return syncAllocation(ctx, s, pool, sources);
}

/** The body of resources.repair_organization (also run by repair_step items). */
async function repairOrganizationRun(ctx: ProcContext, input: { orgId: string }) {
  // lock order of the mailbox procedures: organization, then mailbox rows, then the subscription
  const org = await lockOrg(ctx, input.orgId, 'share');
  const charges = await mailboxChargeDrift(ctx.tx, ctx.dialect, org.id);
  if (ctx.dialect === 'postgres') {
    for (let i = 0; i < charges.length; i += 500) {
      await ctx.tx.selectFrom('mailboxes').select('id').where('id', 'in', charges.slice(i, i + 500).map((m) => m.mailboxId)).orderBy('id').forUpdate().execute();
    }
  }
  let s = await lockSubscription(ctx, org.id);
  const unplacedBoxes = await unplaced(ctx, org.id, 'mailbox');
  const unplacedFolders = await unplaced(ctx, org.id, 'public_folder');
  const folderCharges = await folderChargeDrift(ctx.tx, org.id);
  const touched = {
    mailboxes: [...new Set([...charges.map((m) => m.mailboxId), ...unplacedBoxes.map((r) => r.id)])].sort(),
    folders: [...new Set([...folderCharges.map((f) => f.folderId), ...unplacedFolders.map((r) => r.id)])].sort(),
  };
  const before = await orgState(ctx, org.id, touched);
  const unresolved: Unresolved[] = [];

  // 1. charges above what the plan (or quota) gives come down in place, before the recount: a recount of what
  //    they claim could exceed their piece, and lowering never needs room. A deleted mailbox is charged nothing.
  //    Charges below it go up later (steps 5 and 6), where placement can find the room.
  const lower = async (table: 'mailboxes' | 'public_folders', rows: { id: string; stored: bigint; expected: bigint }[]) => {
    const byValue = new Map<bigint, string[]>();
    for (const r of rows) if (r.stored > r.expected) byValue.set(r.expected, [...(byValue.get(r.expected) ?? []), r.id]);
    for (const [value, ids] of byValue) {
      for (let i = 0; i < ids.length; i += 500) {
        await ctx.tx.updateTable(table).set({ charged_bytes: Number(value), updated_at: ctx.now }).where('id', 'in', ids.slice(i, i + 500)).execute();
      }
    }
  };
  await lower('mailboxes', charges.map((m) => ({ id: m.mailboxId, stored: m.stored, expected: m.expected })));
  await lower('public_folders', folderCharges.map((f) => ({ id: f.folderId, stored: f.stored, expected: f.expected })));

  // 2. the subscription's counters from its rows
  const { actuals, mailboxes, folders } = await orgActuals(ctx.tx, org.id);
  const a = actuals.get(org.id);
  const counters: Record<string, number> = {};
  for (const c of COUNTERS) {
    const want = a ? a[c] : 0n;
    if (BigInt(s.sub[c]) !== want) counters[c] = Number(want);
  }
  if (Object.keys(counters).length > 0) {
    await ctx.tx.updateTable('org_subscriptions').set({ ...counters, updated_at: ctx.now }).where('org_id', '=', org.id).execute();
    Object.assign(s.sub, counters);
  }

  // 3. each piece's charge and count from the recipients on its store; the store's count moves by the same difference
  const sums = { mailbox: new Map(mailboxes.map((g) => [g.storeId, g.sum])), public_folder: new Map(folders.map((g) => [g.storeId, g.sum])) };
  for (const p of await pieceRows(ctx.tx, org.id)) {
    const want = sums[p.pool].get(p.storeId) ?? { n: 0n, bytes: 0n };
    const set: Record<string, number> = {};
    if (want.bytes !== p.charged) {
      if (want.bytes <= p.bytes) set.charged_bytes = Number(want.bytes);
      else unresolved.push({ what: 'piece', id: p.storeId, code: CHECK_CODES.pieceOverAllocation, message: `the recipients on store ${p.storeId} are charged ${want.bytes} bytes; the piece holds ${p.bytes}` });
    }
    if (want.n !== p.count) set.mailbox_count = Number(want.n);
    if (Object.keys(set).length === 0) continue;
    await ctx.tx.updateTable('store_allocations').set(set).where('org_id', '=', org.id).where('store_id', '=', p.storeId).execute();
    const d = want.n - p.count;
    if (d !== 0n) {
      await ctx.tx.updateTable('mailstores')
        .set({ mailbox_count: sql`CASE WHEN mailbox_count + ${Number(d)} < 0 THEN 0 ELSE mailbox_count + ${Number(d)} END`, updated_at: ctx.now })
        .where('id', '=', p.storeId).execute();
    }
  }

  // 4. recipients on no piece: placed as if new (they are already in the counters)
  for (const pool of ['mailbox', 'public_folder'] as const) {
    const table = pool === 'mailbox' ? 'mailboxes' : 'public_folders';
    for (const r of pool === 'mailbox' ? unplacedBoxes : unplacedFolders) {
      await attempt(ctx, unresolved, pool === 'mailbox' ? 'mailbox' : 'public_folder', r.id, async () => {
        const storeId = await placeRecipient(ctx, s, pool, { storeId: null, charged: 0, counted: false }, r.charged);
        await ctx.tx.updateTable(table).set({ store_id: storeId, updated_at: ctx.now }).where('id', '=', r.id).execute();
      });
    }
  }

  // 5. public folders charged below their prohibitPostQuota: charged again, as an edit of the folder would
  for (const f of folderCharges.filter((x) => x.stored < x.expected)) {
    await attempt(ctx, unresolved, 'public_folder', f.folderId, async () => {
      const storeId = await placeRecipient(ctx, s, 'public_folder', { storeId: f.storeId, charged: Number(f.stored), counted: true }, Number(f.expected));
      await charge(ctx, s, { publicFolderBytes: Number(f.expected - f.stored) });
      await ctx.tx.updateTable('public_folders').set({ charged_bytes: Number(f.expected), store_id: storeId, updated_at: ctx.now }).where('id', '=', f.folderId).execute();
    });
  }

  // 6. active mailboxes whose charge did not follow their plan: the RESETTLE_MAILBOX procedure (all their settings
  //    from the plans), now that what they are charged is what the counters and pieces hold; one charged too
  //    little is placed for the difference (its audit and target stay this repair's)
  const inner: ProcContext = { ...ctx, target: () => {}, diff: () => {} };
  for (const m of charges.filter((x) => x.active)) {
    await attempt(ctx, unresolved, 'mailbox', m.mailboxId, async () => {
      await resettleMailbox.run(inner, { orgId: org.id, mailboxId: m.mailboxId });
    });
  }

  // 7. the pieces add up to the allocation again
  s = await lockSubscription(ctx, org.id);
  for (const pool of ['mailbox', 'public_folder'] as const) {
    await attempt(ctx, unresolved, 'allocation', pool, () => resync(ctx, s, pool));
  }

  const after = await orgState(ctx, org.id, touched);
  ctx.target(target('organization', org.id));
  ctx.diff(before, after);
  return { orgId: org.id, changed: JSON.stringify(before) !== JSON.stringify(after), unresolved };
}

/** The body of resources.repair_store. */
async function repairStoreRun(ctx: ProcContext, input: { storeId: string }) {
  // the row lock first, the sums after it: an allocation that changed the store before us has committed by
  // then and is in the sums; one that changes a piece later moves the store's totals by its own difference
  let q = ctx.tx.selectFrom('mailstores').selectAll().where('id', '=', input.storeId);
  if (ctx.dialect === 'postgres') q = q.forUpdate();
  const before = await q.executeTakeFirst();
  if (!before) throw Errors.notFound(`mailstore ${input.storeId} not found`);
  const sum = (await storePieceSums(ctx.tx, before.id)).get(before.id) ?? { bytes: 0n, count: 0n, orgs: 0, firstOrg: null };
  const unresolved: Unresolved[] = [];
  const set: Record<string, unknown> = {};
  if (BigInt(before.allocated_bytes) !== sum.bytes) {
    if (sum.bytes <= BigInt(before.capacity_bytes)) set.allocated_bytes = Number(sum.bytes);
    else unresolved.push({ what: 'mailstore', id: before.id, code: CHECK_CODES.storeOverCapacity, message: `its pieces add up to ${sum.bytes} bytes, more than its capacity of ${before.capacity_bytes}` });
  }
  if (BigInt(before.mailbox_count) !== sum.count) set.mailbox_count = Number(sum.count);
  const owner = before.owner_org_id ?? null;
  if (before.sharing === 'dedicated' && sum.orgs > 1) {
    unresolved.push({ what: 'mailstore', id: before.id, code: CHECK_CODES.dedicatedStoreShared, message: `the dedicated store holds pieces of ${sum.orgs} organizations` });
  } else {
    const want = before.sharing === 'dedicated' ? sum.firstOrg : null;
    if (owner !== want) set.owner_org_id = want;
  }
  const after = { ...before, ...set };
  if (Object.keys(set).length > 0) {
    await ctx.tx.updateTable('mailstores').set({ ...set, updated_at: ctx.now }).where('id', '=', before.id).execute();
    after.updated_at = ctx.now;
  }
  ctx.target(target('mailstore', before.id));
  ctx.diff(toStore(before), toStore(after));
  return { storeId: before.id, changed: Object.keys(set).length > 0, unresolved };
}

export const repairOrganization = defineProcedure({
  id: REPAIR.organization,
  input: Type.Object(ORG, strict),
  minRole: 'provider_admin',
  run: repairOrganizationRun,
});

export const repairStore = defineProcedure({
  id: REPAIR.store,
  input: Type.Object(STORE, strict),
  minRole: 'provider_admin',
  run: repairStoreRun,
});

/** One item of the repair batch: an organization or a store. */
export const repairStep = defineProcedure({
  id: REPAIR.step,
  input: Type.Union([Type.Object(ORG, strict), Type.Object(STORE, strict)]),
  minRole: 'provider_admin',
  run: (ctx, input): Promise<unknown> => ('orgId' in input ? repairOrganizationRun(ctx, input) : repairStoreRun(ctx, input)),
});

const ORG_CODES = new Set<string>([
  CHECK_CODES.orgCounterDrift, CHECK_CODES.allocationDrift, CHECK_CODES.pieceDrift, CHECK_CODES.mailboxChargeDrift,
  CHECK_CODES.mailboxesUnplaced, CHECK_CODES.folderChargeDrift, CHECK_CODES.foldersUnplaced,
]);

/** The items of a repair batch for `findings`: organizations (by id), then stores (by id). */
export async function repairItems(ctx: ProcContext, findings: Finding[]): Promise<Record<string, string>[]> {
  const orgs = new Set<string>();
  const stores = new Set<string>();
  for (const f of findings) {
    if (!f.repairable) continue;
    if (ORG_CODES.has(f.code) && f.orgId) orgs.add(f.orgId);
    else if (f.storeId) stores.add(f.storeId);
    // a recipient placed on a store without its piece leaves that store's count to be recomputed
    if (ORG_CODES.has(f.code) && f.storeId) stores.add(f.storeId);
  }
  const ids = [...orgs];
  for (let i = 0; i < ids.length; i += 500) {
    const rows = await ctx.tx.selectFrom('store_allocations').select('store_id').distinct().where('org_id', 'in', ids.slice(i, i + 500)).execute();
    for (const r of rows) stores.add(r.store_id);
  }
  return [...[...orgs].sort().map((orgId) => ({ orgId })), ...[...stores].sort().map((storeId) => ({ storeId }))];
}

/**
 * Check, then start the repair batch of what can be repaired. Returns the check's counts and the batch
 * request (null when nothing is repairable); the caller follows that request and checks again.
 */
export const repair = defineProcedure({
  id: REPAIR.start,
  input: Type.Object({}, strict),
  minRole: 'provider_admin',
  async run(ctx) {
    const report = await runCheck(ctx.tx, ctx.dialect);
    const items = await repairItems(ctx, report.findings);
    const repairable = report.findings.filter((f) => f.repairable).length;
    const t = target('check', 'platform');
    const repairRequestId = items.length > 0 ? ctx.spawnBatch({ procedure: REPAIR.step, items, target: t }) : null;
    ctx.target(t);
    const result = { findings: report.findings.length, repairable, items: items.length, repairRequestId };
    ctx.diff(null, result);
    return result;
  },
});

export const repairProcedures = [repair, repairStep, repairOrganization, repairStore];
