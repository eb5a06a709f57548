import { sql } from 'kysely';
import { Errors, HmcError } from '../core/errors.js';
import type { ProcContext } from '../engine/procedure.js';
import type { Db } from '../store/db.js';
import { allocationOf, type Subscription } from '../plans/limits.js';
import {
  allocateOrganization, growForRecipient, placeMailbox, PlacementError, shrinkOrganization,
  type AllocationAlgorithm, type MailboxAlgorithm, type OrgPiece, type Piece, type StoreSharing, type StoreState,
} from './algorithms.js';

/**
 * The Resource Manager inside the engine's transactions: it applies the pure decisions of algorithms.ts to
 * `mailstores` and `store_allocations`, so that for every organization and pool
 *
 *   sum of its pieces' bytes  = its allocation (allocationOf: plan or override, plus dynamic growth)
 *   a piece's charged_bytes   = sum of the charges of the recipients placed on that store
 *   a store's allocated_bytes = sum of the pieces on it ≤ its capacity
 *
 * and the organization-level counters of org_subscriptions (which `charge` keeps) are the sums of the
 * pieces. `hmc check` verifies exactly these equalities.
 *
 * Concurrency (PostgreSQL; SQLite runs one writer). Callers hold the organization's subscription row
 * (lockSubscription), so an organization's pieces change one transaction at a time. What organizations
 * share is the store rows: a decision that adds bytes to stores first takes the pool's advisory lock (one
 * allocation decision per pool at a time) and writes with conditional UPDATEs, and the CHECK constraints
 * stop anything that would still over-commit. Lock order is always subscription → pool lock → store rows
 * (in store id order), so two transactions never wait on each other in a cycle. Counting a mailbox onto a
 * store (max_mailboxes) needs no pool lock: the conditional UPDATE re-reads the row it waited for.
 */

export type Pool = 'mailbox' | 'public_folder';

const POOL_LOCK: Record<Pool, number> = { mailbox: 0x484d4301, public_folder: 0x484d4302 };

type Ctx = Pick<ProcContext, 'tx' | 'now' | 'dialect'>;

/* eslint-disable @typescript-eslint/no-explicit-any */
const toState = (r: any): StoreState => ({
  id: r.id, capacityBytes: Number(r.capacity_bytes), allocatedBytes: Number(r.allocated_bytes), sharing: r.sharing, state: r.state,
  ownerOrgId: r.owner_org_id ?? null, maxMailboxes: r.max_mailboxes === null || r.max_mailboxes === undefined ? null : Number(r.max_mailboxes),
  mailboxCount: Number(r.mailbox_count),
});

async function lockPool(ctx: Ctx, pool: Pool): Promise<void> {
  if (ctx.dialect === 'postgres') await sql`SELECT pg_advisory_xact_lock(${POOL_LOCK[pool]})`.execute(ctx.tx);
}

/** The organization's pieces in a pool and the stores they are on (fresh rows, read in this transaction). */
export async function orgPieces(
  tx: Db, orgId: string, pool: Pool, usefulFor?: { bytes: number; storeId: string | null },
): Promise<{ pieces: OrgPiece[]; stores: StoreState[] }> {
  let q = tx.selectFrom('store_allocations as a').innerJoin('mailstores as s', 's.id', 'a.store_id')
    .select(['a.store_id', 'a.bytes', 'a.charged_bytes', 'a.mailbox_count as piece_count', 's.id', 's.capacity_bytes', 's.allocated_bytes', 's.sharing', 's.state',
      's.owner_org_id', 's.max_mailboxes', 's.mailbox_count'])
    .where('a.org_id', '=', orgId).where('s.purpose', '=', pool);
  if (usefulFor) {
    // only the pieces a placement of `bytes` can use: the one it is on now, those with the bytes uncharged,
    // and those whose store could grow them by the rest (an organization that grew over many nearly full
    // stores otherwise reads them all on every create)
    const { bytes, storeId } = usefulFor;
    q = q.where((eb) => eb.or([
      ...(storeId ? [eb('a.store_id', '=', storeId)] : []),
      eb(sql`a.bytes - a.charged_bytes`, '>=', bytes),
      eb(sql`s.capacity_bytes - s.allocated_bytes + a.bytes - a.charged_bytes`, '>=', bytes),
    ]));
  }
  const rows = await q.orderBy('a.store_id').execute();
  return {
    pieces: rows.map((r) => ({ storeId: r.store_id, bytes: Number(r.bytes), chargedBytes: Number(r.charged_bytes), mailboxCount: Number(r.piece_count) })),
    stores: rows.map(toState),
  };
}

async function poolStores(tx: Db, pool: Pool, sharing: StoreSharing): Promise<StoreState[]> {
  const rows = await tx.selectFrom('mailstores').selectAll().where('purpose', '=', pool).where('sharing', '=', sharing).where('state', '=', 'active').execute();
  return rows.map(toState);
}

/**
 * Stores that could take a whole `bytes` charge as a new piece, best first by the algorithm's order
 * (tightPack: least free; minStoreCount: most free; level: lowest fill ratio after, a few of them so
 * growForRecipient compares the ratios exactly). Filtered in SQL, so a grow reads a handful of rows, not the pool.
 */
export async function growthCandidates(tx: Db, pool: Pool, sharing: StoreSharing, orgId: string, bytes: number, algorithm: AllocationAlgorithm, skip: Set<string>): Promise<StoreState[]> {
  let q = tx.selectFrom('mailstores').select(['id', 'capacity_bytes', 'allocated_bytes', 'sharing', 'state', 'owner_org_id', 'max_mailboxes', 'mailbox_count'])
    .where('purpose', '=', pool).where('sharing', '=', sharing).where('state', '=', 'active')
    .where(sql<boolean>`capacity_bytes - allocated_bytes >= ${bytes}`)
    .where((eb) => eb.or([eb('max_mailboxes', 'is', null), eb('mailbox_count', '<', eb.ref('max_mailboxes'))]));
  if (sharing === 'dedicated') q = q.where((eb) => eb.or([eb('owner_org_id', '=', orgId), eb.and([eb('owner_org_id', 'is', null), eb('allocated_bytes', '=', 0)])]));
  if (skip.size > 0) q = q.where('id', 'not in', [...skip]);
  const ordered = algorithm === 'level'
    ? q.orderBy(sql`(allocated_bytes + ${bytes}) * 1.0 / capacity_bytes`).orderBy('id').limit(8)
    : q.orderBy(sql`capacity_bytes - allocated_bytes`, algorithm === 'tightPack' ? 'asc' : 'desc').orderBy('id').limit(1);
  return (await ordered.execute()).map(toState);
}

const sharingOf = (s: Subscription): StoreSharing => s.plan.mailstore_kind;
const algorithmOf = (s: Subscription): AllocationAlgorithm => s.plan.placement;
/** Inside an allocation a mailbox goes best-fit (tightPack, and minStoreCount: fill the fewest stores) or level. */
const mailboxAlgorithmOf = (s: Subscription): MailboxAlgorithm => (s.plan.placement === 'level' ? 'level' : 'tightPack');
const targetOf = (s: Subscription, pool: Pool): number => (pool === 'mailbox' ? allocationOf(s).mailboxBytes : allocationOf(s).publicFolderBytes);

/** Pieces in store id order: every transaction touches store rows in that order, so none waits on another in a cycle. */
const inStoreOrder = (pieces: Piece[]): Piece[] => [...pieces].sort((a, b) => (a.storeId < b.storeId ? -1 : 1));

/** Add bytes to the organization's allocation on stores (taking free dedicated stores), under the pool lock. */
async function addPieces(ctx: Ctx, s: Subscription, pieces: Piece[], claims: string[]): Promise<void> {
  for (const p of inStoreOrder(pieces)) {
    if (!(await growStore(ctx, s.sub.org_id, p.storeId, p.bytes, { claim: claims.includes(p.storeId), count: false }))) {
      throw Errors.storageLimit(`mailstore ${p.storeId} changed while the allocation was decided; try again`);
    }
    await upsertPiece(ctx, s, p.storeId, { bytes: p.bytes, charged: 0, count: 0 });
  }
}

/**
 * Add `bytes` to a store's allocation (and, with `count`, one recipient to its count) if the row, as it is
 * now, still allows it: room under the capacity (and max_mailboxes), and for a dedicated store this
 * organization as its owner, or no owner and nothing allocated when it is claimed. False when it does not.
 */
async function growStore(ctx: Ctx, orgId: string, storeId: string, bytes: number, o: { claim: boolean; count: boolean }): Promise<boolean> {
  let q = ctx.tx.updateTable('mailstores')
    .set({
      allocated_bytes: sql`allocated_bytes + ${bytes}`, owner_org_id: o.claim ? orgId : sql`owner_org_id`,
      ...(o.count ? { mailbox_count: sql`mailbox_count + 1` } : {}), updated_at: ctx.now,
    })
    .where('id', '=', storeId)
    .where(sql<boolean>`allocated_bytes + ${bytes} <= capacity_bytes`)
    .where((eb) => (o.claim ? eb.and([eb('owner_org_id', 'is', null), eb('allocated_bytes', '=', 0)]) : eb.or([eb('sharing', '=', 'shared'), eb('owner_org_id', '=', orgId)])));
  if (o.count) q = q.where((eb) => eb.or([eb('max_mailboxes', 'is', null), eb('mailbox_count', '<', eb.ref('max_mailboxes'))]));
  return Number((await q.executeTakeFirst()).numUpdatedRows) === 1;
}

/** Add to the organization's piece on a store (made if it has none): bytes, charged bytes, recipients. One statement. */
async function upsertPiece(ctx: Ctx, s: Subscription, storeId: string, d: { bytes: number; charged: number; count: number }): Promise<void> {
  await ctx.tx.insertInto('store_allocations')
    .values({ org_id: s.sub.org_id, store_id: storeId, reseller_id: s.sub.reseller_id, bytes: d.bytes, charged_bytes: d.charged, mailbox_count: d.count })
    .onConflict((oc) => oc.columns(['org_id', 'store_id']).doUpdateSet({
      bytes: sql`store_allocations.bytes + excluded.bytes`,
      charged_bytes: sql`store_allocations.charged_bytes + excluded.charged_bytes`,
      mailbox_count: sql`store_allocations.mailbox_count + excluded.mailbox_count`,
    }))
    .execute();
}

/**
 * Take bytes off the organization's pieces. A piece left with no bytes, no charge and no recipient goes,
 * and a dedicated store the organization no longer has a piece on is free again (owner NULL): it can be
 * allocated again, to the same organization or another (HMC's RU6 bug was refusing the former).
 */
async function removePieces(ctx: Ctx, orgId: string, pieces: Piece[]): Promise<void> {
  for (const p of inStoreOrder(pieces)) {
    await ctx.tx.updateTable('store_allocations').set({ bytes: sql`bytes - ${p.bytes}` }).where('org_id', '=', orgId).where('store_id', '=', p.storeId).execute();
    await ctx.tx.deleteFrom('store_allocations').where('org_id', '=', orgId).where('store_id', '=', p.storeId)
      .where('bytes', '=', 0).where('charged_bytes', '=', 0).where('mailbox_count', '=', 0).execute();
    const gone = !(await ctx.tx.selectFrom('store_allocations').select('org_id').where('org_id', '=', orgId).where('store_id', '=', p.storeId).executeTakeFirst());
    await ctx.tx.updateTable('mailstores')
      .set({ allocated_bytes: sql`allocated_bytes - ${p.bytes}`, owner_org_id: gone ? sql`CASE WHEN owner_org_id = ${orgId} THEN NULL ELSE owner_org_id END` : sql`owner_org_id`, updated_at: ctx.now })
      .where('id', '=', p.storeId).execute();
  }
}

/**
 * Make the organization's placed allocation in `pool` equal what its subscription grants (allocationOf):
 * grow by the plan's algorithm (or `sources`), shrink from its one store (or `sources`; several stores
 * without sources → shrink_needs_sources). Called after every change of plan, override or pool size.
 */
export async function syncAllocation(ctx: Ctx, s: Subscription, pool: Pool, sources?: Piece[]): Promise<void> {
  const orgId = s.sub.org_id as string;
  const target = BigInt(targetOf(s, pool));
  const { pieces } = await orgPieces(ctx.tx, orgId, pool);
  const placed = pieces.reduce((sum, p) => sum + BigInt(p.bytes), 0n);
  if (target === placed) return;
  if (target > placed) {
    await lockPool(ctx, pool);
    const stores = await poolStores(ctx.tx, pool, sharingOf(s));
    // pieces on stores of the other kind (left from an earlier plan) still count as held
    const a = allocateOrganization(stores, { orgId, bytes: Number(target - placed), sharing: sharingOf(s), algorithm: algorithmOf(s), sources }, pieces);
    await addPieces(ctx, s, a.pieces, a.claims);
  } else {
    const sh = shrinkOrganization(pieces, Number(placed - target), sources);
    await removePieces(ctx, orgId, sh.pieces);
  }
}

/** Where a recipient is charged now: its store (null: nowhere yet), its charge and whether it counts there. */
export interface Placement {
  storeId: string | null;
  charged: number;
  counted: boolean;
}

async function countOnStore(ctx: Ctx, storeId: string, delta: 1 | -1): Promise<boolean> {
  let q = ctx.tx.updateTable('mailstores').set({ mailbox_count: sql`mailbox_count + ${delta}`, updated_at: ctx.now }).where('id', '=', storeId);
  if (delta > 0) q = q.where((eb) => eb.or([eb('max_mailboxes', 'is', null), eb('mailbox_count', '<', eb.ref('max_mailboxes'))]));
  const r = await q.executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

async function movePiece(ctx: Ctx, orgId: string, storeId: string, charged: number, count: number): Promise<void> {
  await ctx.tx.updateTable('store_allocations').set({ charged_bytes: sql`charged_bytes + ${charged}`, mailbox_count: sql`mailbox_count + ${count}` })
    .where('org_id', '=', orgId).where('store_id', '=', storeId).execute();
}

/**
 * Charge a mailbox (pool 'mailbox') or public folder (pool 'public_folder') on a store inside its
 * organization's allocation, releasing what it held before: `was` is where it is charged now, `bytes` the
 * new charge (null: it stops being charged and counted, e.g. deleted; it stays on its store, where its data
 * is). It stays on its store when the new charge fits the piece there (a quota change is not a move);
 * otherwise the algorithm picks a piece, or `explicitStoreId`; when none has room and the plan is dynamic,
 * the allocation grows on one store by the shortfall (growForRecipient). Returns the store it is on.
 *
 * Refusals (STORAGE_LIMIT, invalid_sources) are thrown before any row changes. The organization-level
 * counters are `charge`'s job; they follow from the pieces (a fit in a piece is a fit in the allocation).
 */
export async function placeRecipient(ctx: Ctx, s: Subscription, pool: Pool, was: Placement, bytes: number | null, explicitStoreId?: string): Promise<string | null> {
  const orgId = s.sub.org_id as string;
  // an explicit store is looked at whatever its room (its refusal says why)
  const { pieces, stores } = await orgPieces(ctx.tx, orgId, pool, explicitStoreId === undefined && bytes !== null ? { bytes, storeId: was.storeId } : undefined);
  const release = was.counted && was.storeId !== null ? was : null;
  if (release) {
    const p = pieces.find((x) => x.storeId === release.storeId);
    const st = stores.find((x) => x.id === release.storeId);
    if (p && st) {
      p.chargedBytes = Math.max(0, p.chargedBytes - release.charged);
      p.mailboxCount = Math.max(0, p.mailboxCount - 1);
      st.mailboxCount = Math.max(0, st.mailboxCount - 1);
    }
  }
  const unplace = async () => {
    if (!release) return;
    await movePiece(ctx, orgId, release.storeId!, -release.charged, -1);
    await countOnStore(ctx, release.storeId!, -1);
  };
  if (bytes === null) {
    await unplace();
    return was.storeId;
  }
  // stay where it is when it fits (a quota change is not a move; a restored mailbox goes back to its data)
  const here = was.storeId !== null && explicitStoreId === undefined ? pieces.find((x) => x.storeId === was.storeId) : undefined;
  const fitsHere = here !== undefined && BigInt(here.bytes) - BigInt(here.chargedBytes) >= BigInt(bytes);
  if (here && release && fitsHere) {
    await movePiece(ctx, orgId, here.storeId, bytes - release.charged, 0);
    return here.storeId;
  }
  // leaving one store for another touches two store rows: under the pool lock, so two such changes in opposite
  // directions never wait on each other's rows (a single-store change holds one row and waits for nothing)
  if (release) await lockPool(ctx, pool);
  const full = new Set<string>();
  for (;;) {
    const candidates = stores.map((st) => (full.has(st.id) ? { ...st, maxMailboxes: 0 } : st));
    let target: string;
    let growth: { storeId: string; bytes: number; claim: boolean } | null = null;
    try {
      target = here && fitsHere && !full.has(here.storeId) ? here.storeId : placeMailbox(pieces, candidates, bytes, mailboxAlgorithmOf(s), explicitStoreId);
    } catch (e) {
      if (!(e instanceof PlacementError) || e.code !== 'STORAGE_LIMIT' || pool !== 'mailbox' || !allocationOf(s).dynamic || explicitStoreId !== undefined) throw e;
      // growForRecipient prefers the least growth, then the organization's own stores: a new store grows by the
      // whole charge, an own one by at most that, so when an own store can grow the answer is one of them and
      // no other store needs reading; otherwise the best other store by the algorithm is all that can win
      const req = { orgId, bytes, sharing: sharingOf(s), algorithm: algorithmOf(s), held: allocationOf(s).mailboxBytes };
      const usable = (list: StoreState[]) => list.map((st) => (full.has(st.id) ? { ...st, maxMailboxes: 0 } : st));
      try {
        growth = growForRecipient(usable(stores), pieces, req);
      } catch (e2) {
        if (!(e2 instanceof PlacementError) || e2.code !== 'STORAGE_LIMIT') throw e2;
        const own = new Set(stores.map((st) => st.id));
        const others = (await growthCandidates(ctx.tx, pool, sharingOf(s), orgId, bytes, algorithmOf(s), full)).filter((st) => !own.has(st.id));
        growth = growForRecipient(usable([...stores, ...others]), pieces, req);
      }
      target = growth.storeId;
    }
    const same = release !== null && target === release.storeId;
    if (growth) {
      // no pool lock: the conditional UPDATE re-checks the store's room, mailbox slot and owner on the row itself;
      // a store another organization filled meanwhile is skipped and the decision made again. Store row, piece
      // and subscription: three statements.
      if (!(await growStore(ctx, orgId, target, growth.bytes, { claim: growth.claim, count: !same }))) {
        full.add(target);
        continue;
      }
      await upsertPiece(ctx, s, target, { bytes: growth.bytes, charged: same ? bytes - release.charged : bytes, count: same ? 0 : 1 });
      const grown = BigInt(s.sub.grown_bytes) + BigInt(growth.bytes);
      await ctx.tx.updateTable('org_subscriptions').set({ grown_bytes: Number(grown), updated_at: ctx.now }).where('org_id', '=', orgId).execute();
      s.sub.grown_bytes = Number(grown);
      if (!same) await unplace();
      return target;
    }
    // count it on the store: the step another organization can race for (max_mailboxes)
    if (!same && !(await countOnStore(ctx, target, 1))) {
      full.add(target);
      if (explicitStoreId !== undefined) throw Errors.storageLimit(`store ${target} holds its maximum of mailboxes`);
      continue;
    }
    if (same) {
      await movePiece(ctx, orgId, target, bytes - release.charged, 0);
    } else {
      await movePiece(ctx, orgId, target, bytes, 1);
      await unplace();
    }
    return target;
  }
}

/**
 * Move a mailbox's charge to `targetStoreId` (a mailbox move; HMC's MoveMailbox with the RM's
 * MoveAllocation). When the organization's piece there has room, only the charge moves; otherwise the
 * allocation moves with it: the piece on the old store gives up the shortfall (it just got the mailbox's
 * charge back, so it has it uncharged) and the target store's piece takes it, so the organization's total
 * allocation is unchanged. The target must be an active mailbox store of the plan's sharing with the free
 * bytes and a mailbox slot (STORAGE_LIMIT), not another organization's dedicated store (dedicated_store_held).
 */
export async function moveRecipient(ctx: Ctx, s: Subscription, was: Placement, targetStoreId: string): Promise<{ storeId: string; allocationMoved: number }> {
  const orgId = s.sub.org_id as string;
  if (!was.counted || was.storeId === null) throw Errors.stateConflict('only an active, placed mailbox can move');
  const { pieces } = await orgPieces(ctx.tx, orgId, 'mailbox');
  const target = pieces.find((p) => p.storeId === targetStoreId);
  const spare = target ? BigInt(target.bytes) - BigInt(target.chargedBytes) : 0n;
  const need = BigInt(was.charged) - spare;
  if (need > 0n) {
    await lockPool(ctx, 'mailbox');
    const stores = (await ctx.tx.selectFrom('mailstores').selectAll().where('id', '=', targetStoreId).where('purpose', '=', 'mailbox').execute()).map(toState);
    const a = allocateOrganization(stores, { orgId, bytes: Number(need), sharing: sharingOf(s), algorithm: algorithmOf(s), sources: [{ storeId: targetStoreId, bytes: Number(need) }] }, []);
    await addPieces(ctx, s, a.pieces, a.claims);
    // the old piece gives the bytes up after the mailbox's charge has left it (placeRecipient below)
    const placed = await placeRecipient(ctx, s, 'mailbox', was, was.charged, targetStoreId);
    await removePieces(ctx, orgId, [{ storeId: was.storeId, bytes: Number(need) }]);
    return { storeId: placed as string, allocationMoved: Number(need) };
  }
  return { storeId: (await placeRecipient(ctx, s, 'mailbox', was, was.charged, targetStoreId)) as string, allocationMoved: 0 };
}

/**
 * Give back `bytes` of allocation that a move took from store `from` to store `to` (the undo of a move that
 * failed): only when the organization's piece on `to` has them uncharged and `from` still has the room; if
 * another organization took that room meanwhile the allocation stays on `to` (consistent, and `hmc check` clean).
 */
export async function returnAllocation(ctx: Ctx, s: Subscription, to: string, from: string, bytes: number): Promise<boolean> {
  if (bytes <= 0) return true;
  const orgId = s.sub.org_id as string;
  await lockPool(ctx, 'mailbox');
  const { pieces } = await orgPieces(ctx.tx, orgId, 'mailbox');
  const p = pieces.find((x) => x.storeId === to);
  if (!p || BigInt(p.bytes) - BigInt(p.chargedBytes) < BigInt(bytes)) return false;
  if (!(await growStore(ctx, orgId, from, bytes, { claim: false, count: false }))) return false;
  await upsertPiece(ctx, s, from, { bytes, charged: 0, count: 0 });
  await removePieces(ctx, orgId, [{ storeId: to, bytes }]);
  return true;
}

/**
 * Everything an organization holds in both pools goes (its purge): pieces deleted, store totals reduced,
 * dedicated stores freed. Store rows only get smaller, so no pool lock is needed.
 */
export async function releaseOrganization(tx: Db, orgId: string, now: number): Promise<void> {
  const rows = await tx.selectFrom('store_allocations').selectAll().where('org_id', '=', orgId).orderBy('store_id').execute();
  for (const r of rows) {
    await tx.updateTable('mailstores').set({
      allocated_bytes: sql`allocated_bytes - ${Number(r.bytes)}`, mailbox_count: sql`mailbox_count - ${Number(r.mailbox_count)}`,
      owner_org_id: sql`CASE WHEN owner_org_id = ${orgId} THEN NULL ELSE owner_org_id END`, updated_at: now,
    }).where('id', '=', r.store_id).execute();
  }
  await tx.deleteFrom('store_allocations').where('org_id', '=', orgId).execute();
}

/**
 * An organization's mailboxes all stop being charged at once (a forced organization delete): its pieces'
 * charges and counts go to zero and the stores count them no more. The allocation itself stays until the purge.
 */
export async function unchargeOrganizationMailboxes(tx: Db, orgId: string, now: number): Promise<void> {
  const rows = await tx.selectFrom('store_allocations as a').innerJoin('mailstores as s', 's.id', 'a.store_id')
    .select(['a.store_id', 'a.mailbox_count']).where('a.org_id', '=', orgId).where('s.purpose', '=', 'mailbox').orderBy('a.store_id').execute();
  for (const r of rows) {
    if (Number(r.mailbox_count) !== 0) {
      await tx.updateTable('mailstores').set({ mailbox_count: sql`mailbox_count - ${Number(r.mailbox_count)}`, updated_at: now }).where('id', '=', r.store_id).execute();
    }
    await tx.updateTable('store_allocations').set({ charged_bytes: 0, mailbox_count: 0 }).where('org_id', '=', orgId).where('store_id', '=', r.store_id).execute();
  }
}
