/**
 * Resource Manager placement decisions (issue 4, build items 2–3) as pure functions over plain data:
 * no I/O, so the engine calls them inside the transaction that holds the store rows locked and writes
 * what they return. HMC 4.5's RM did this in Int32 kilobytes and overflowed at 2 TB (RU6); here every
 * sum and comparison is BigInt bytes and only the results (each ≤ 2^53) go back to numbers.
 */
import { Errors, HmcError, type ErrorKind } from '../core/errors.js';

/** An organization holds at most this many bytes (DESIGN §3 units; the same bound as plans/limits MAX_BYTES). */
export const ORG_MAX_BYTES = 2 ** 53;

export type StoreSharing = 'shared' | 'dedicated';
export type StoreRunState = 'active' | 'draining' | 'offline';
export type AllocationAlgorithm = 'tightPack' | 'level' | 'minStoreCount';
export type MailboxAlgorithm = 'tightPack' | 'level';

/** A mailstore as the decision sees it (one row of the registry, read under lock). */
export interface StoreState {
  id: string;
  capacityBytes: number;
  /** Sum of every organization's piece on this store. */
  allocatedBytes: number;
  sharing: StoreSharing;
  /** Only active stores receive new allocations and mailboxes. */
  state: StoreRunState;
  /** The organization a dedicated store belongs to; null when free (never set on shared stores). */
  ownerOrgId: string | null;
  maxMailboxes: number | null;
  /** Mailboxes of every organization on this store. */
  mailboxCount: number;
}

/** Bytes on one store (a piece to add, to remove, or an explicit source). */
export interface Piece {
  storeId: string;
  bytes: number;
}

/** An organization's allocation on one store and what its mailboxes are charged there. */
export interface OrgPiece extends Piece {
  chargedBytes: number;
  /** This organization's mailboxes on the store. */
  mailboxCount: number;
}

export interface AllocationRequest {
  orgId: string;
  /** Bytes to add (a grow, or the dynamic shortfall). */
  bytes: number;
  sharing: StoreSharing;
  algorithm: AllocationAlgorithm;
  /** Explicit placement (HMC's sourceMailStores): used as given, the algorithm is ignored. */
  sources?: Piece[];
}

export interface Allocation {
  /** Bytes to ADD to the organization's piece on each store: one entry per store, bytes > 0, sum = request. */
  pieces: Piece[];
  /** Dedicated stores this allocation takes (ownerOrgId was null): the caller sets their owner to the org. */
  claims: string[];
}

export interface Shrink {
  /** Bytes to REMOVE from the organization's piece on each store. */
  pieces: Piece[];
  /** Stores where the organization's piece drops to 0: the caller deletes the piece and releases a dedicated store. */
  emptied: string[];
}

/** The codes a placement can refuse with; all registered in src/core/errors.ts (one registry). */
const REGISTERED = [Errors.storageLimit, Errors.dedicatedStoreHeld, Errors.shrinkNeedsSources, Errors.invalidSources, Errors.invalidRequest] as const;
export const PLACEMENT_CODES = {
  storageLimit: Errors.storageLimit.code,
  dedicatedStoreHeld: Errors.dedicatedStoreHeld.code,
  shrinkNeedsSources: Errors.shrinkNeedsSources.code,
  invalidSources: Errors.invalidSources.code,
  invalidRequest: Errors.invalidRequest.code,
} as const;
export type PlacementCode = string;

const KIND: Record<string, ErrorKind> = Object.fromEntries(REGISTERED.map((e) => [e.code, e.kind]));

/** A refused placement. An HmcError, so it reaches the client as problem+json with its stable code. */
export class PlacementError extends HmcError {
  declare readonly code: PlacementCode;
  constructor(code: PlacementCode, message: string) {
    super(code, KIND[code] ?? 'invalid', message);
    this.name = 'PlacementError';
  }
}

function fail(code: PlacementCode, message: string): never {
  throw new PlacementError(code, message);
}

/** Exact bytes as BigInt; inputs that are not non-negative integers are caller bugs, not client errors. */
function big(n: number, what: string): bigint {
  if (!Number.isInteger(n) || n < 0) throw new HmcError('internal_error', 'internal', `${what} is not a byte count: ${n}`);
  return BigInt(n);
}

/** A request size from a client: a positive integer of at most 2^53 bytes. */
function requested(n: unknown, what: string): bigint {
  if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0 || n > ORG_MAX_BYTES) {
    fail(PLACEMENT_CODES.invalidRequest, `${what} must be a whole number of bytes between 1 and ${ORG_MAX_BYTES}`);
  }
  return BigInt(n);
}

const freeOf = (s: StoreState): bigint => {
  const f = big(s.capacityBytes, `store ${s.id} capacity`) - big(s.allocatedBytes, `store ${s.id} allocation`);
  // an over-committed store (drift that `hmc check` reports) has no room, never negative room
  return f > 0n ? f : 0n;
};

const hasMailboxRoom = (s: StoreState): boolean => s.maxMailboxes === null || s.mailboxCount < s.maxMailboxes;

const cmpBig = (x: bigint, y: bigint): number => (x < y ? -1 : x > y ? 1 : 0);
const cmpId = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);

/** Compare fill ratios n1/d1 and n2/d2 exactly (cross-multiplied); a zero-sized denominator counts as full. */
function cmpRatio(n1: bigint, d1: bigint, n2: bigint, d2: bigint): number {
  if (d1 === 0n) [n1, d1] = [1n, 1n];
  if (d2 === 0n) [n2, d2] = [1n, 1n];
  return cmpBig(n1 * d2, n2 * d1);
}

interface Cand {
  id: string;
  free: bigint;
  alloc: bigint;
  cap: bigint;
}

/**
 * `fit(a, b, r)` ranks the stores that can take the remainder r whole (lowest wins); `fill` orders the stores
 * that are filled completely when none can. Ties always fall to the store id so the choice is reproducible.
 */
interface Orders {
  fit: (a: Cand, b: Cand, r: bigint) => number;
  fill: (a: Cand, b: Cand) => number;
}

const leastFree = (a: Cand, b: Cand): number => cmpBig(a.free, b.free) || cmpId(a.id, b.id);
const mostFree = (a: Cand, b: Cand): number => cmpBig(b.free, a.free) || cmpId(a.id, b.id);

const ORDERS: Record<AllocationAlgorithm, Orders> = {
  // best fit: the store with the least free bytes that still takes the request, so big holes stay whole
  // and (with equal capacities) empty stores are opened last: fewest stores in use system-wide; when none fits,
  // fill the fullest first
  tightPack: { fit: leastFree, fill: leastFree },
  // the store whose fill ratio AFTER taking the request is lowest (exact, cross-multiplied): ratios stay level;
  // when none fits, fill the stores with the most free bytes first (fewest pieces)
  level: {
    fit: (a, b, r) => cmpRatio(a.alloc + r, a.cap, b.alloc + r, b.cap) || cmpId(a.id, b.id),
    fill: mostFree,
  },
  // most free bytes first: fewest stores for this organization (its own stores are a tier ahead, see allocateOrganization)
  minStoreCount: { fit: mostFree, fill: mostFree },
};

/**
 * Place `need` bytes over tiers of candidate stores. Within a tier: if a store takes the whole remainder,
 * the best by `fit` gets it and we are done; otherwise the first by `fill` is filled completely and we go on.
 * A later tier is touched only when the earlier ones are full. Splits therefore happen only when no single
 * store (of the tier) fits. Feasibility is checked first so a refusal never leaves a partial answer.
 */
function placeOver(tiers: Cand[][], need: bigint, o: Orders, what: string): Piece[] {
  let total = 0n;
  for (const t of tiers) for (const c of t) total += c.free;
  if (total < need) fail(PLACEMENT_CODES.storageLimit, `${what}: ${need} bytes requested, ${total} free on the eligible stores`);
  const out: Piece[] = [];
  let r = need;
  for (const tier of tiers) {
    const rest = tier.filter((c) => c.free > 0n).sort(o.fill);
    while (r > 0n && rest.length > 0) {
      let best: Cand | undefined;
      for (const c of rest) if (c.free >= r && (best === undefined || o.fit(c, best, r) < 0)) best = c;
      if (best) {
        out.push({ storeId: best.id, bytes: Number(r) });
        return out;
      }
      const c = rest.shift() as Cand;
      out.push({ storeId: c.id, bytes: Number(c.free) });
      r -= c.free;
    }
  }
  return out; // not reached: with total >= need the loop above returns
}

/**
 * Decide where an organization's grow of `req.bytes` goes. Returns the bytes to ADD per store (and the
 * dedicated stores it takes) or throws PlacementError.
 *
 * Eligible stores: active, of the requested sharing, with free bytes (capacity − allocated) and room for one
 * more mailbox (bytes on a store that cannot take a mailbox could never be charged; explicit sources may
 * still name such a store, e.g. to grow under a mailbox whose quota went up). A dedicated store is eligible
 * only if this organization owns it or it is free (no owner and nothing allocated); a store released by its
 * organization (owner back to null, allocation 0) is therefore eligible again for that org or another (RU6).
 *
 * - tightPack: best fit by free bytes (least free that takes the whole request; ties by id); if none
 *   does, fill stores completely fullest-first (least free first) until the remainder fits one store.
 * - level: the store with the lowest fill ratio after placement, (allocated + bytes) / capacity, that takes
 *   the whole request (ties by id); if none does, fill stores completely most-free-first until the rest fits.
 * - minStoreCount: first the stores where the org already has a piece: the one with the most free bytes
 *   that takes the whole request, else fill them most-free-first; then the other stores most-free-first
 *   (a single one if any takes the remainder), which adds the fewest stores to the organization.
 * - dedicated (any algorithm): stores the org already owns come first, as a tier, then free dedicated stores,
 *   so the org's own capacity is used before another store is taken out of the pool.
 * - sources: used as given; each must be an active store of the requested sharing, listed once, and the
 *   bytes must sum to req.bytes (invalid_sources); a dedicated store owned by another org, or holding bytes
 *   without an owner, is dedicated_store_held; a source larger than the store's free bytes is STORAGE_LIMIT.
 *
 * STORAGE_LIMIT also when the organization would hold more than 2^53 bytes, or the eligible stores together
 * lack the room (a dedicated store held by another org only ever surfaces as dedicated_store_held when named).
 */
export function allocateOrganization(
  stores: readonly StoreState[],
  req: AllocationRequest,
  current: readonly Pick<Piece, 'storeId' | 'bytes'>[],
): Allocation {
  const need = requested(req.bytes, 'the allocation');
  let held = 0n;
  for (const p of current) held += big(p.bytes, `piece on ${p.storeId}`);
  if (held + need > BigInt(ORG_MAX_BYTES)) {
    fail(PLACEMENT_CODES.storageLimit, `an organization holds at most ${ORG_MAX_BYTES} bytes; it holds ${held}, ${need} more does not fit`);
  }
  if (req.sources !== undefined) return explicitSources(stores, req, need);

  const o = ORDERS[req.algorithm];
  if (o === undefined) fail(PLACEMENT_CODES.invalidRequest, `unknown algorithm ${String(req.algorithm)}`);
  const dedicated = req.sharing === 'dedicated';
  const mine = new Set(current.filter((p) => p.bytes > 0).map((p) => p.storeId));
  const preferred: Cand[] = [];
  const others: Cand[] = [];
  for (const s of stores) {
    if (s.state !== 'active' || s.sharing !== req.sharing || !hasMailboxRoom(s)) continue;
    const owned = dedicated && s.ownerOrgId === req.orgId;
    if (dedicated && !owned && (s.ownerOrgId !== null || s.allocatedBytes !== 0)) continue;
    const c: Cand = { id: s.id, free: freeOf(s), alloc: big(s.allocatedBytes, 'allocated'), cap: big(s.capacityBytes, 'capacity') };
    if (c.free === 0n) continue;
    const first = owned || (req.algorithm === 'minStoreCount' && mine.has(s.id));
    (first ? preferred : others).push(c);
  }
  // one tier for shared tightPack/level: "split only when no single store fits" applies across all stores
  const tiers = preferred.length > 0 ? [preferred, others] : [others];
  const pieces = placeOver(tiers, need, o, `organization ${req.orgId}`);
  const unowned = new Set(stores.filter((s) => dedicated && s.ownerOrgId === null).map((s) => s.id));
  const claims = pieces.filter((p) => unowned.has(p.storeId)).map((p) => p.storeId);
  return { pieces, claims };
}

function explicitSources(stores: readonly StoreState[], req: AllocationRequest, need: bigint): Allocation {
  const sources = req.sources as unknown;
  if (!Array.isArray(sources) || sources.length === 0) fail(PLACEMENT_CODES.invalidSources, 'sources must list at least one store');
  const byId = new Map(stores.map((s) => [s.id, s]));
  const seen = new Set<string>();
  let sum = 0n;
  const pieces: Piece[] = [];
  const claims: string[] = [];
  for (const src of sources as Piece[]) {
    const id = src?.storeId;
    if (typeof id !== 'string' || seen.has(id)) fail(PLACEMENT_CODES.invalidSources, `source ${String(id)} is missing or listed twice`);
    seen.add(id);
    const b = requested(src.bytes, `source ${id} bytes`);
    sum += b;
    const s = byId.get(id);
    if (s === undefined) fail(PLACEMENT_CODES.invalidSources, `store ${id} does not exist`);
    const store = s;
    if (store.state !== 'active') fail(PLACEMENT_CODES.invalidSources, `store ${id} is ${store.state}, not active`);
    if (store.sharing !== req.sharing) fail(PLACEMENT_CODES.invalidSources, `store ${id} is ${store.sharing}, the allocation is ${req.sharing}`);
    if (req.sharing === 'dedicated') {
      const other = store.ownerOrgId !== null && store.ownerOrgId !== req.orgId;
      if (other || (store.ownerOrgId === null && store.allocatedBytes !== 0)) {
        fail(PLACEMENT_CODES.dedicatedStoreHeld, `dedicated store ${id} is held by another organization`);
      }
      if (store.ownerOrgId === null) claims.push(id);
    }
    const free = freeOf(store);
    if (b > free) fail(PLACEMENT_CODES.storageLimit, `store ${id} has ${free} bytes free; ${b} requested`);
    pieces.push({ storeId: id, bytes: Number(b) });
  }
  if (sum !== need) fail(PLACEMENT_CODES.invalidSources, `sources add up to ${sum} bytes; the allocation is ${need}`);
  return { pieces, claims };
}

/**
 * Decide which pieces lose `bytes` when an organization's allocation shrinks. On one store no sources are
 * needed; across several HMC found "no good widely applicable algorithm" and neither do we: without
 * sources → shrink_needs_sources. No piece goes below what its mailboxes are charged (STORAGE_LIMIT);
 * sources naming a store the org has no piece on, twice, or not summing to `bytes` → invalid_sources.
 */
export function shrinkOrganization(
  current: readonly Pick<OrgPiece, 'storeId' | 'bytes' | 'chargedBytes'>[],
  bytes: number,
  sources?: Piece[],
): Shrink {
  const need = requested(bytes, 'the shrink');
  const live = current.filter((p) => p.bytes > 0);
  let plan: { piece: (typeof live)[number]; take: bigint }[];
  if (sources === undefined) {
    if (live.length === 0) fail(PLACEMENT_CODES.storageLimit, 'the organization has no allocation to shrink');
    if (live.length > 1) {
      fail(PLACEMENT_CODES.shrinkNeedsSources, `the organization spans ${live.length} stores; say which stores give up how many bytes`);
    }
    plan = [{ piece: live[0]!, take: need }];
  } else {
    if (!Array.isArray(sources) || sources.length === 0) fail(PLACEMENT_CODES.invalidSources, 'sources must list at least one store');
    const seen = new Set<string>();
    let sum = 0n;
    plan = [];
    for (const src of sources) {
      const id = src?.storeId;
      if (typeof id !== 'string' || seen.has(id)) fail(PLACEMENT_CODES.invalidSources, `source ${String(id)} is missing or listed twice`);
      seen.add(id);
      const take = requested(src.bytes, `source ${id} bytes`);
      sum += take;
      const piece = live.find((p) => p.storeId === id);
      if (piece === undefined) fail(PLACEMENT_CODES.invalidSources, `the organization has no allocation on store ${id}`);
      plan.push({ piece, take });
    }
    if (sum !== need) fail(PLACEMENT_CODES.invalidSources, `sources add up to ${sum} bytes; the shrink is ${need}`);
  }
  const pieces: Piece[] = [];
  const emptied: string[] = [];
  for (const { piece, take } of plan) {
    const has = big(piece.bytes, 'piece bytes');
    const charged = big(piece.chargedBytes, 'charged bytes');
    const spare = has > charged ? has - charged : 0n;
    if (take > spare) {
      fail(PLACEMENT_CODES.storageLimit, `store ${piece.storeId}: ${has} bytes allocated, ${charged} charged; cannot give up ${take}`);
    }
    pieces.push({ storeId: piece.storeId, bytes: Number(take) });
    if (take === has) emptied.push(piece.storeId);
  }
  return { pieces, emptied };
}

/**
 * Choose the store, inside the organization's allocation, that takes a mailbox (or public folder) charged
 * `bytes`: a piece on an active store with room for one more mailbox whose uncharged bytes
 * (piece.bytes − piece.chargedBytes) cover the charge.
 * - tightPack: the piece with the fewest uncharged bytes that fits (best fit; ties by store id).
 * - level: the piece with the lowest charge ratio after placement, (charged + bytes) / piece.bytes; ties by
 *   fewer of the org's mailboxes there, then store id.
 * - explicitStoreId: that store, if the org has a piece there on an active store (else invalid_sources) with
 *   room for the charge and a mailbox (else STORAGE_LIMIT).
 * STORAGE_LIMIT when nothing fits: the caller may grow a dynamic allocation with allocateOrganization
 * (by the shortfall) and ask again.
 */
export function placeMailbox(
  pieces: readonly OrgPiece[],
  stores: readonly StoreState[],
  bytes: number,
  algorithm: MailboxAlgorithm,
  explicitStoreId?: string,
): string {
  if (!Number.isInteger(bytes) || bytes < 0 || bytes > ORG_MAX_BYTES) {
    fail(PLACEMENT_CODES.invalidRequest, `a charge must be a whole number of bytes between 0 and ${ORG_MAX_BYTES}`);
  }
  const need = BigInt(bytes);
  const byId = new Map(stores.map((s) => [s.id, s]));
  const spareOf = (p: OrgPiece): bigint => big(p.bytes, 'piece bytes') - big(p.chargedBytes, 'charged bytes');
  if (explicitStoreId !== undefined) {
    const p = pieces.find((x) => x.storeId === explicitStoreId);
    const s = byId.get(explicitStoreId);
    if (p === undefined || s === undefined || s.state !== 'active') {
      fail(PLACEMENT_CODES.invalidSources, `store ${explicitStoreId} is not an active store in the organization's allocation`);
    }
    const store = s;
    if (!hasMailboxRoom(store)) fail(PLACEMENT_CODES.storageLimit, `store ${explicitStoreId} holds its maximum of ${store.maxMailboxes} mailboxes`);
    const spare = spareOf(p);
    if (spare < need) fail(PLACEMENT_CODES.storageLimit, `store ${explicitStoreId}: ${spare > 0n ? spare : 0n} bytes of the allocation uncharged; ${need} needed`);
    return explicitStoreId;
  }
  let best: { p: OrgPiece; spare: bigint; n: bigint; d: bigint } | undefined;
  for (const p of pieces) {
    const s = byId.get(p.storeId);
    if (s === undefined || s.state !== 'active' || !hasMailboxRoom(s)) continue;
    const spare = spareOf(p);
    if (spare < need) continue;
    const c = { p, spare, n: big(p.chargedBytes, 'charged bytes') + need, d: big(p.bytes, 'piece bytes') };
    if (best === undefined) {
      best = c;
      continue;
    }
    const order =
      algorithm === 'level'
        ? cmpRatio(c.n, c.d, best.n, best.d) || p.mailboxCount - best.p.mailboxCount || cmpId(p.storeId, best.p.storeId)
        : cmpBig(c.spare, best.spare) || cmpId(p.storeId, best.p.storeId);
    if (order < 0) best = c;
  }
  if (best === undefined) fail(PLACEMENT_CODES.storageLimit, `no store in the organization's allocation has ${need} bytes uncharged and room for a mailbox`);
  return best.p.storeId;
}

export interface Growth {
  /** The store whose piece grows (or which gets a new piece). */
  storeId: string;
  /** Bytes added to the organization's allocation there: the shortfall, never more. */
  bytes: number;
  /** True when the organization takes a free dedicated store with it. */
  claim: boolean;
}

/**
 * A dynamic organization's allocation grows on demand (HMC's autoAllocate): when no piece has room for a
 * recipient charged `req.bytes`, choose the ONE store whose piece grows by the least, since a mailbox lives
 * on one store. Candidates: the organization's own pieces on eligible stores (growth = charge − uncharged
 * bytes of the piece), then eligible stores it has no piece on (growth = the whole charge), where eligible
 * means what allocateOrganization accepts (active, the plan's sharing, room for a mailbox, a dedicated store
 * owned by the organization or free) and the store's free bytes cover the growth. Least growth wins; on a
 * tie, a store where the organization already is, then the algorithm's order (tightPack: least free;
 * level: lowest fill ratio after; minStoreCount: most free), then the store id. STORAGE_LIMIT when no single
 * store can take it or the organization would pass 2^53 bytes (`req.held`: what it holds, when `pieces` are
 * only the ones that can matter).
 */
export function growForRecipient(
  stores: readonly StoreState[],
  pieces: readonly OrgPiece[],
  req: { orgId: string; bytes: number; sharing: StoreSharing; algorithm: AllocationAlgorithm; held?: number },
): Growth {
  const need = requested(req.bytes, 'the charge');
  // what the organization holds in all (callers that pass only the pieces that matter say it)
  let held = req.held !== undefined ? big(req.held, 'held bytes') : 0n;
  if (req.held === undefined) for (const p of pieces) held += big(p.bytes, `piece on ${p.storeId}`);
  const own = new Map(pieces.map((p) => [p.storeId, p]));
  const o = ORDERS[req.algorithm];
  if (o === undefined) fail(PLACEMENT_CODES.invalidRequest, `unknown algorithm ${String(req.algorithm)}`);
  let best: { c: Cand; grow: bigint; mine: boolean; claim: boolean } | undefined;
  for (const s of stores) {
    if (s.state !== 'active' || s.sharing !== req.sharing || !hasMailboxRoom(s)) continue;
    const p = own.get(s.id);
    const dedicated = req.sharing === 'dedicated';
    if (dedicated && s.ownerOrgId !== req.orgId && (s.ownerOrgId !== null || s.allocatedBytes !== 0)) continue;
    const spare = p ? big(p.bytes, 'piece bytes') - big(p.chargedBytes, 'charged bytes') : 0n;
    const grow = need - (spare > 0n ? spare : 0n);
    const c: Cand = { id: s.id, free: freeOf(s), alloc: big(s.allocatedBytes, 'allocated'), cap: big(s.capacityBytes, 'capacity') };
    if (grow <= 0n || c.free < grow) continue;
    const cand = { c, grow, mine: p !== undefined, claim: dedicated && s.ownerOrgId === null };
    if (
      best === undefined ||
      (cmpBig(cand.grow, best.grow) || Number(best.mine) - Number(cand.mine) || o.fit(cand.c, best.c, cand.grow)) < 0
    ) {
      best = cand;
    }
  }
  if (best === undefined) fail(PLACEMENT_CODES.storageLimit, `no single store has room to grow organization ${req.orgId}'s allocation for a ${need}-byte charge`);
  if (held + best.grow > BigInt(ORG_MAX_BYTES)) {
    fail(PLACEMENT_CODES.storageLimit, `an organization holds at most ${ORG_MAX_BYTES} bytes; it holds ${held}, ${best.grow} more does not fit`);
  }
  return { storeId: best.c.id, bytes: Number(best.grow), claim: best.claim };
}
