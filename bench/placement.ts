/**
 * Resource Manager benchmark (issue 4): placement decisions with 1,000 mailstores and 100,000 placed
 * mailboxes, p50/p99 per decision (target p99 ≤ 1 ms in-process on SQLite), against the pure decision on
 * in-memory arrays; a full mailbox create at that size against the same on an empty platform; store
 * listings at that size. Run through `npm run bench -- --suite placement`. Not a test: nothing is
 * asserted about time. A readable summary goes to stderr, the JSON to stdout and .bench/placement-last.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { sql } from 'kysely';
import { createPlatform, initPlatform, type Platform } from '../src/app.js';
import { configFromEnv } from '../src/core/config.js';
import { SYSTEM } from '../src/core/tenancy.js';
import { P } from '../src/directory/procedures.js';
import { PP } from '../src/plans/procedures.js';
import { lockSubscription } from '../src/plans/limits.js';
import { DOMAIN_PROCS } from '../src/mail/domains-procedures.js';
import { MAILBOX_PROCS } from '../src/mail/mailboxes-model.js';
import { RP } from '../src/resources/procedures.js';
import { growthCandidates, orgPieces, placeRecipient } from '../src/resources/placement.js';
import { growForRecipient, placeMailbox, PlacementError, type AllocationAlgorithm, type OrgPiece, type StoreState } from '../src/resources/algorithms.js';
import { encodeCursor } from '../src/store/page.js';
import { newId } from '../src/core/ids.js';
import { createTestDatabase, type TestDatabase } from '../src/store/testing.js';
import type { Db, Dialect } from '../src/store/db.js';
import { machineInfo, pool, progress, round, summarize, type LatencySummary } from './lib.js';
import { prng } from '../test/prng.js';

/* eslint-disable @typescript-eslint/no-explicit-any */

const { values: opt } = parseArgs({
  options: {
    suite: { type: 'string' },
    db: { type: 'string', default: 'both' },
    servers: { type: 'string', default: '10' },
    'stores-per-server': { type: 'string', default: '100' },
    orgs: { type: 'string', default: '1000' },
    'per-org': { type: 'string', default: '100' },
    decisions: { type: 'string', default: '2000' },
    creates: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '64' },
    'list-iterations': { type: 'string', default: '300' },
    load: { type: 'string', default: 'auto' },
    seed: { type: 'string', default: '4' },
  },
  allowPositionals: false,
  strict: false,
});

const SERVERS = Number(opt.servers);
const PER_SERVER = Number(opt['stores-per-server']);
const ORGS = Number(opt.orgs);
const PER_ORG = Number(opt['per-org']);
const DECISIONS = Number(opt.decisions);
const CREATES = Number(opt.creates);
const LIST_ITERATIONS = Number(opt['list-iterations']);
const GiB = 1024 ** 3;
/** Every mailbox is charged its prohibitSendReceiveQuota: 1 GiB. */
const CHARGE = GiB;
const ALGORITHMS: AllocationAlgorithm[] = ['tightPack', 'level', 'minStoreCount'];
/** Fixed organizations hold this much: 100 mailboxes of 1 GiB leave 28 GiB uncharged (the "fits" decisions). */
const FIXED_BYTES = 128 * GiB;
/** Half of the dynamic organizations start with this much, the others with nothing; all grow per mailbox. */
const DYNAMIC_BASE = 32 * GiB;
const rate = (n: number, ms: number) => round(n / (ms / 1000), 1);
const ratio = (a: number, b: number) => (b > 0 ? round(a / b, 1) : null);

/** Deterministic PRNG, so both databases see the same organizations in the same order. */
const rng = prng;

interface Org {
  id: string;
  domain: string;
  domainId: string;
  kind: 'fixed' | 'dynamic';
  algorithm: AllocationAlgorithm;
  /** Mailboxes made so far (address numbering). */
  made: number;
}

interface World {
  servers: string[];
  /** [serverId, storeId] of every store, in creation order. */
  stores: Array<{ serverId: string; id: string }>;
  orgs: Org[];
  mailboxPlanId: string;
}

// ---------------------------------------------------------------- setup

/**
 * Store sizes: 64–256 GiB, varied by a fixed pattern; every 5th store has a mailbox limit (not binding at
 * 1 GiB a mailbox); 3 stores per server are draining from the start (they never get anything).
 */
function storeSpec(i: number, j: number) {
  const n = i * PER_SERVER + j;
  return {
    name: `store-${String(j).padStart(3, '0')}`,
    capacityBytes: (64 + ((n * 37) % 193)) * GiB,
    maxMailboxes: j % 5 === 0 ? 1000 : null,
    state: j % 33 === 7 ? ('draining' as const) : ('active' as const),
  };
}

async function registerStores(platform: Platform): Promise<Pick<World, 'servers' | 'stores'>> {
  const e = platform.engine;
  const servers: string[] = [];
  const stores: World['stores'] = [];
  for (let i = 0; i < SERVERS; i++) {
    const srv = (await e.submit<any>(SYSTEM, RP.createServer, { name: `mx-${i}`, lmtpEndpoint: `10.0.${i}.1:24`, imapEndpoint: `10.0.${i}.1:143`, mailRoot: `/srv/mail/mx-${i}` })).result;
    servers.push(srv.id);
    const made: Array<{ serverId: string; id: string }> = new Array(PER_SERVER);
    await pool(PER_SERVER, 16, async (j) => {
      const st = (await e.submit<any>(SYSTEM, RP.createStore, { serverId: srv.id, ...storeSpec(i, j) })).result;
      made[j] = { serverId: srv.id, id: st.id };
    });
    stores.push(...made);
  }
  return { servers, stores };
}

/**
 * One reseller; six provider organization plans (fixed 128 GiB, or dynamic on 0 / 32 GiB, for each
 * placement algorithm); ORGS organizations, each with a domain, subscribed through PP.subscribe (whose
 * syncAllocation places a fixed allocation on the stores), the mailbox plan available, the domain accepted.
 */
async function subscribeOrgs(platform: Platform): Promise<Pick<World, 'orgs' | 'mailboxPlanId'>> {
  const e = platform.engine;
  const rsl = (await e.submit<any>(SYSTEM, P.createReseller, { name: 'placement-bench' })).result;
  const plans: Record<string, string> = {};
  for (const a of ALGORITHMS) {
    plans[`fixed-${a}`] = (await e.submit<any>(SYSTEM, PP.createOrgPlan, { name: `fixed-${a.toLowerCase()}`, storageBytes: FIXED_BYTES, dynamicStorage: false, placement: a, publicFolderBytes: 0 })).result.id;
    plans[`dynamic-${a}`] = (await e.submit<any>(SYSTEM, PP.createOrgPlan, { name: `dynamic-${a.toLowerCase()}`, storageBytes: null, dynamicStorage: true, placement: a, publicFolderBytes: 0 })).result.id;
  }
  const mbx = (await e.submit<any>(SYSTEM, PP.createMailboxPlan, { name: 'mbx-1g', issueWarningQuota: 900 * 1024 ** 2, prohibitSendQuota: 950 * 1024 ** 2, prohibitSendReceiveQuota: CHARGE })).result;
  const orgs: Org[] = new Array(ORGS);
  // 8 in flight: every fixed subscription is an allocation decision over the whole pool (PostgreSQL: under the pool lock)
  await pool(ORGS, 8, async (i) => {
    const kind = i % 2 === 0 ? 'fixed' : 'dynamic';
    const algorithm = ALGORITHMS[Math.floor(i / 2) % 3]!;
    const org = (await e.submit<any>(SYSTEM, P.createOrganization, { resellerId: rsl.id, name: `pl-o${i}` })).result;
    const dom = (await e.submit<any>(SYSTEM, P.addDomain, { orgId: org.id, name: `o${i}.placement.bench.example` })).result;
    const storageBytes = kind === 'dynamic' && i % 4 === 3 ? DYNAMIC_BASE : undefined;
    await e.submit(SYSTEM, PP.subscribe, { orgId: org.id, orgPlanId: plans[`${kind}-${algorithm}`], ...(storageBytes ? { storageBytes } : {}) });
    await e.submit(SYSTEM, PP.addAvailablePlan, { orgId: org.id, planId: mbx.id });
    await e.submit(SYSTEM, DOMAIN_PROCS.acceptDomain, { orgId: org.id, domainId: dom.id });
    orgs[i] = { id: org.id, domain: dom.name, domainId: dom.id, kind, algorithm, made: 0 };
  });
  return { orgs, mailboxPlanId: mbx.id };
}

const mailboxInput = (w: World, o: Org, prefix: string) => ({ orgId: o.id, kind: 'shared', primaryAddress: `${prefix}${o.made++}@${o.domain}`, displayName: `Box ${o.made}`, planId: w.mailboxPlanId });

/** PER_ORG mailboxes in every organization through the engine (64 in flight, round-robin): the real placement path. */
async function loadMailboxes(platform: Platform, w: World): Promise<Record<string, unknown>> {
  const n = ORGS * PER_ORG;
  const errors: Record<string, number> = {};
  let ok = 0;
  const t0 = performance.now();
  let last = t0;
  await pool(n, Number(opt.concurrency), async (k) => {
    try {
      await platform.engine.submit(SYSTEM, MAILBOX_PROCS.createMailbox, mailboxInput(w, w.orgs[k % ORGS]!, 'm'));
      ok++;
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'unknown';
      errors[code] = (errors[code] ?? 0) + 1;
    }
    if (performance.now() - last > 15_000) {
      last = performance.now();
      progress(`    ${ok}/${n} mailboxes placed (${rate(ok, last - t0)}/s)`);
    }
  });
  const ms = performance.now() - t0;
  progress(`  loaded ${ok}/${n} mailboxes through mail.create_mailbox in ${round(ms / 1000)} s (${rate(ok, ms)}/s)`);
  return { method: 'engine: mail.create_mailbox for every mailbox (placeRecipient, growForRecipient for dynamic organizations)', mailboxes: n, accepted: ok, rejected: errors, seconds: round(ms / 1000), mailboxesPerSec: rate(ok, ms) };
}

/**
 * The same end state written with SQL (PostgreSQL, where the engine places ~70 mailboxes/s with 64 in flight,
 * since every grow of a dynamic allocation queues on the pool lock): the placement of every mailbox is decided
 * by the same pure functions placeRecipient applies (placeMailbox in the organization's pieces, else
 * growForRecipient over the pool), in the same round-robin order, on the rows read after the subscriptions;
 * then mailbox and address rows (cloned from a mailbox the engine made, so every column is as the engine
 * writes it) are inserted, and pieces, store totals and subscription counters set to the sums, in one
 * transaction. checkConsistency verifies the result like after an engine load.
 */
async function loadMailboxesSql(platform: Platform, w: World): Promise<Record<string, unknown>> {
  const db = platform.store.db;
  const t0 = performance.now();
  const storeRows = (await db.selectFrom('mailstores').selectAll().where('purpose', '=', 'mailbox').execute()).map(toState);
  const stores = new Map(storeRows.map((x) => [x.id, x]));
  const subs = new Map((await db.selectFrom('org_subscriptions').selectAll().execute()).map((r: any) => [r.org_id as string, { ...r }]));
  const pieces = new Map<string, OrgPiece[]>();
  const existing = new Set<string>();
  for (const r of await db.selectFrom('store_allocations').selectAll().execute()) {
    const list = pieces.get(r.org_id) ?? [];
    list.push({ storeId: r.store_id, bytes: Number(r.bytes), chargedBytes: Number(r.charged_bytes), mailboxCount: Number(r.mailbox_count) });
    pieces.set(r.org_id, list);
    existing.add(`${r.org_id}/${r.store_id}`);
  }
  const mbxTemplate = await db.selectFrom('mailboxes').selectAll().where('charged_bytes', '=', CHARGE).where('state', '=', 'active').executeTakeFirstOrThrow();
  const adrTemplate = await db.selectFrom('addresses').selectAll().where('recipient_id', '=', mbxTemplate.id).executeTakeFirstOrThrow();
  const resellerOf = new Map((await db.selectFrom('organizations').select(['id', 'reseller_id']).execute()).map((r: any) => [r.id as string, r.reseller_id as string]));
  const mailboxes: any[] = [];
  const addresses: any[] = [];
  const errors: Record<string, number> = {};
  let grows = 0;
  const now = Date.now();
  for (let k = 0; k < ORGS * PER_ORG; k++) {
    const o = w.orgs[k % ORGS]!;
    const mine = pieces.get(o.id) ?? [];
    pieces.set(o.id, mine);
    let target: string;
    try {
      target = placeMailbox(mine, mine.map((p) => stores.get(p.storeId)!), CHARGE, o.algorithm === 'level' ? 'level' : 'tightPack');
    } catch (e) {
      if (!(e instanceof PlacementError) || o.kind !== 'dynamic') {
        errors[(e as any).code ?? 'unknown'] = (errors[(e as any).code ?? 'unknown'] ?? 0) + 1;
        continue;
      }
      let g;
      try {
        g = growForRecipient(storeRows, mine, { orgId: o.id, bytes: CHARGE, sharing: 'shared', algorithm: o.algorithm });
      } catch (e2) {
        errors[(e2 as any).code ?? 'unknown'] = (errors[(e2 as any).code ?? 'unknown'] ?? 0) + 1;
        continue;
      }
      grows++;
      stores.get(g.storeId)!.allocatedBytes += g.bytes;
      let p = mine.find((x) => x.storeId === g.storeId);
      if (!p) mine.push((p = { storeId: g.storeId, bytes: 0, chargedBytes: 0, mailboxCount: 0 }));
      p.bytes += g.bytes;
      const sub = subs.get(o.id)!;
      sub.grown_bytes = Number(sub.grown_bytes) + g.bytes;
      target = g.storeId;
    }
    const p = mine.find((x) => x.storeId === target)!;
    p.chargedBytes += CHARGE;
    p.mailboxCount += 1;
    stores.get(target)!.mailboxCount += 1;
    const sub = subs.get(o.id)!;
    sub.mailbox_count = Number(sub.mailbox_count) + 1;
    sub.mailbox_bytes = Number(sub.mailbox_bytes) + CHARGE;
    const id = newId('mailbox');
    const address = `m${o.made}@${o.domain}`;
    o.made++;
    mailboxes.push({ ...mbxTemplate, id, org_id: o.id, reseller_id: resellerOf.get(o.id), primary_address: address, display_name: `Box ${o.made}`, store_id: target, created_at: now, updated_at: now });
    addresses.push({ ...adrTemplate, address, org_id: o.id, reseller_id: resellerOf.get(o.id), domain_id: o.domainId, recipient_id: id, created_at: now });
  }
  const decidedMs = performance.now() - t0;
  await db.transaction().execute(async (tx) => {
    for (let i = 0; i < mailboxes.length; i += 500) await tx.insertInto('mailboxes').values(mailboxes.slice(i, i + 500)).execute();
    for (let i = 0; i < addresses.length; i += 1000) await tx.insertInto('addresses').values(addresses.slice(i, i + 1000)).execute();
    const fresh: any[] = [];
    for (const [orgId, list] of pieces) {
      for (const p of list) {
        if (existing.has(`${orgId}/${p.storeId}`)) {
          await tx.updateTable('store_allocations').set({ bytes: p.bytes, charged_bytes: p.chargedBytes, mailbox_count: p.mailboxCount }).where('org_id', '=', orgId).where('store_id', '=', p.storeId).execute();
        } else {
          fresh.push({ org_id: orgId, store_id: p.storeId, reseller_id: resellerOf.get(orgId), bytes: p.bytes, charged_bytes: p.chargedBytes, mailbox_count: p.mailboxCount });
        }
      }
    }
    for (let i = 0; i < fresh.length; i += 1000) await tx.insertInto('store_allocations').values(fresh.slice(i, i + 1000)).execute();
    for (const st of storeRows) await tx.updateTable('mailstores').set({ allocated_bytes: st.allocatedBytes, mailbox_count: st.mailboxCount, updated_at: now }).where('id', '=', st.id).execute();
    for (const [orgId, sub] of subs) {
      await tx.updateTable('org_subscriptions').set({ grown_bytes: sub.grown_bytes, mailbox_count: sub.mailbox_count, mailbox_bytes: sub.mailbox_bytes, updated_at: now }).where('org_id', '=', orgId).execute();
    }
  });
  const ms = performance.now() - t0;
  const accepted = mailboxes.length;
  progress(`  loaded ${accepted}/${ORGS * PER_ORG} mailboxes with SQL in ${round(ms / 1000)} s (decided in ${round(decidedMs / 1000)} s, ${grows} grows)`);
  return {
    method: 'sql: each placement decided by placeMailbox / growForRecipient (the functions placeRecipient applies) in memory, in round-robin order; mailbox and address rows (cloned from an engine-made mailbox) bulk-inserted, pieces, store totals and subscription counters set to the sums in one transaction',
    mailboxes: ORGS * PER_ORG, accepted, rejected: errors, grows, seconds: round(ms / 1000), decideSeconds: round(decidedMs / 1000),
  };
}

/**
 * The Resource Manager's invariants (placement.ts, DESIGN §3), checked in SQL on the whole database.
 * Each query counts violating rows; all must be 0.
 */
async function checkConsistency(db: Db): Promise<Record<string, number>> {
  const q = async (text: ReturnType<typeof sql>): Promise<number> => Number(((await text.execute(db)).rows[0] as any).n);
  const out: Record<string, number> = {
    storeAllocatedNotSumOfPieces: await q(sql`SELECT COUNT(*) AS n FROM mailstores s WHERE s.allocated_bytes <> COALESCE((SELECT SUM(a.bytes) FROM store_allocations a WHERE a.store_id = s.id), 0)`),
    storeCountNotSumOfPieces: await q(sql`SELECT COUNT(*) AS n FROM mailstores s WHERE s.mailbox_count <> COALESCE((SELECT SUM(a.mailbox_count) FROM store_allocations a WHERE a.store_id = s.id), 0)`),
    storeOverCapacity: await q(sql`SELECT COUNT(*) AS n FROM mailstores WHERE allocated_bytes > capacity_bytes OR (max_mailboxes IS NOT NULL AND mailbox_count > max_mailboxes)`),
    pieceChargedNotSumOfMailboxes: await q(sql`SELECT COUNT(*) AS n FROM store_allocations a JOIN mailstores s ON s.id = a.store_id WHERE s.purpose = 'mailbox' AND (
      a.charged_bytes <> COALESCE((SELECT SUM(m.charged_bytes) FROM mailboxes m WHERE m.org_id = a.org_id AND m.store_id = a.store_id AND m.state = 'active'), 0)
      OR a.mailbox_count <> (SELECT COUNT(*) FROM mailboxes m WHERE m.org_id = a.org_id AND m.store_id = a.store_id AND m.state = 'active'))`),
    pieceChargedOverBytes: await q(sql`SELECT COUNT(*) AS n FROM store_allocations WHERE charged_bytes > bytes`),
    activeMailboxWithoutPiece: await q(sql`SELECT COUNT(*) AS n FROM mailboxes m WHERE m.state = 'active' AND NOT EXISTS (SELECT 1 FROM store_allocations a WHERE a.org_id = m.org_id AND a.store_id = m.store_id)`),
    subscriptionCountersNotSums: await q(sql`SELECT COUNT(*) AS n FROM org_subscriptions o WHERE
      o.mailbox_bytes <> COALESCE((SELECT SUM(m.charged_bytes) FROM mailboxes m WHERE m.org_id = o.org_id AND m.state = 'active'), 0)
      OR o.mailbox_count <> (SELECT COUNT(*) FROM mailboxes m WHERE m.org_id = o.org_id AND m.state = 'active')`),
    allocationNotSumOfPieces: await q(sql`SELECT COUNT(*) AS n FROM org_subscriptions o JOIN org_plans p ON p.id = o.org_plan_id WHERE
      COALESCE(o.storage_override, p.storage_bytes, 0) + o.grown_bytes <> COALESCE((SELECT SUM(a.bytes) FROM store_allocations a JOIN mailstores s ON s.id = a.store_id
        WHERE a.org_id = o.org_id AND s.purpose = 'mailbox'), 0)`),
  };
  const totals = (await sql`SELECT (SELECT COUNT(*) FROM mailboxes WHERE state = 'active') AS mailboxes, (SELECT COUNT(*) FROM store_allocations) AS pieces,
    (SELECT COUNT(*) FROM mailstores) AS stores, (SELECT COUNT(*) FROM org_subscriptions) AS subscriptions`.execute(db)).rows[0] as any;
  const bad = Object.entries(out).filter(([, v]) => v !== 0);
  if (bad.length > 0) throw new Error(`inconsistent state after setup: ${JSON.stringify(Object.fromEntries(bad))}`);
  return { ...out, mailboxes: Number(totals.mailboxes), pieces: Number(totals.pieces), stores: Number(totals.stores), subscriptions: Number(totals.subscriptions) };
}

async function storeFill(db: Db): Promise<Record<string, unknown>> {
  const r = (await sql`SELECT COUNT(*) AS stores, SUM(CASE WHEN state = 'active' THEN 1 ELSE 0 END) AS active, SUM(CASE WHEN state = 'draining' THEN 1 ELSE 0 END) AS draining,
    SUM(capacity_bytes) AS capacity, SUM(allocated_bytes) AS allocated, SUM(CASE WHEN allocated_bytes >= capacity_bytes - ${CHARGE} THEN 1 ELSE 0 END) AS full_stores,
    SUM(mailbox_count) AS mailboxes FROM mailstores`.execute(db)).rows[0] as any;
  return {
    stores: Number(r.stores), active: Number(r.active), draining: Number(r.draining), capacityTiB: round(Number(r.capacity) / 1024 ** 4, 1), allocatedTiB: round(Number(r.allocated) / 1024 ** 4, 1),
    allocatedPercent: round((100 * Number(r.allocated)) / Number(r.capacity), 1), storesWithLessThan1GiBFree: Number(r.full_stores), mailboxesCounted: Number(r.mailboxes),
    piecesPerOrganization: await (async () => {
      const rows = (await sql`SELECT n, COUNT(*) AS orgs FROM (SELECT org_id, COUNT(*) AS n FROM store_allocations GROUP BY org_id) x GROUP BY n ORDER BY n`.execute(db)).rows as any[];
      return Object.fromEntries(rows.map((x) => [String(x.n), Number(x.orgs)]));
    })(),
  };
}

// ---------------------------------------------------------------- measurements

const ROLLBACK = Symbol('rollback');
const NEW = { storeId: null, charged: 0, counted: false } as const;

const toState = (r: any): StoreState => ({
  id: r.id, capacityBytes: Number(r.capacity_bytes), allocatedBytes: Number(r.allocated_bytes), sharing: r.sharing, state: r.state,
  ownerOrgId: r.owner_org_id ?? null, maxMailboxes: r.max_mailboxes === null ? null : Number(r.max_mailboxes), mailboxCount: Number(r.mailbox_count),
});

type Outcome = 'fit' | 'grow' | 'refused';

/**
 * DECISIONS placement decisions for a new 1 GiB mailbox in random organizations, each in its own
 * transaction that is rolled back (so every sample sees the same state): placeRecipient alone is timed
 * (`decision`), and lockSubscription + placeRecipient (`withSubscriptionLock`). The outcome is read from the
 * decision itself: the allocation grew (growForRecipient) or it fit in an existing piece.
 * Then the pure decision on in-memory arrays for the same organizations: placeMailbox over the org's pieces,
 * and when nothing fits, growForRecipient over every store of the registry.
 */
async function benchDecisions(platform: Platform, w: World) {
  const { db, dialect } = platform.store;
  const r = rng(Number(opt.seed));
  const picks = Array.from({ length: DECISIONS }, () => w.orgs[Math.floor(r() * ORGS)]!);
  const one = async (o: Org): Promise<{ outcome: Outcome; ms: number; lockedMs: number; code?: string }> => {
    let res: { outcome: Outcome; ms: number; lockedMs: number; code?: string } | undefined;
    const t0 = performance.now();
    let t1 = 0;
    try {
      await db.transaction().execute(async (tx) => {
        const ctx = { tx, now: Date.now(), dialect };
        const s = await lockSubscription(ctx, o.id);
        const grown = Number(s.sub.grown_bytes);
        t1 = performance.now();
        try {
          await placeRecipient(ctx, s, 'mailbox', NEW, CHARGE);
        } catch (e) {
          const t2 = performance.now();
          res = { outcome: 'refused', ms: t2 - t1, lockedMs: t2 - t0, code: (e as any).code ?? String(e) };
          throw ROLLBACK;
        }
        const t2 = performance.now();
        res = { outcome: Number(s.sub.grown_bytes) !== grown ? 'grow' : 'fit', ms: t2 - t1, lockedMs: t2 - t0 };
        throw ROLLBACK;
      });
    } catch (e) {
      if (e !== ROLLBACK) throw e;
    }
    return res!;
  };
  // warm-up: statement caches, JIT, pool connections
  for (let i = 0; i < 200; i++) await one(w.orgs[i % ORGS]!);
  const ms: Record<Outcome, number[]> = { fit: [], grow: [], refused: [] };
  const locked: Record<Outcome, number[]> = { fit: [], grow: [], refused: [] };
  const codes: Record<string, number> = {};
  const t0 = performance.now();
  for (const o of picks) {
    const x = await one(o);
    ms[x.outcome].push(x.ms);
    locked[x.outcome].push(x.lockedMs);
    if (x.code) codes[x.code] = (codes[x.code] ?? 0) + 1;
  }
  const wall = performance.now() - t0;

  // the pure decision, on the same organizations, with the rows read beforehand (not timed)
  const allStores = (await db.selectFrom('mailstores').selectAll().where('purpose', '=', 'mailbox').execute()).map(toState);
  const piecesOf = new Map<string, Awaited<ReturnType<typeof orgPieces>>>();
  for (const o of new Set(picks)) piecesOf.set(o.id, await orgPieces(db, o.id, 'mailbox'));
  const pure: Record<Outcome, number[]> = { fit: [], grow: [], refused: [] };
  const pureOne = (o: Org): [Outcome, number] => {
    const { pieces, stores } = piecesOf.get(o.id)!;
    const t = performance.now();
    try {
      try {
        placeMailbox(pieces, stores, CHARGE, o.algorithm === 'level' ? 'level' : 'tightPack');
        return ['fit', performance.now() - t];
      } catch (e) {
        if (!(e instanceof PlacementError) || o.kind !== 'dynamic') throw e;
        growForRecipient(allStores, pieces, { orgId: o.id, bytes: CHARGE, sharing: 'shared', algorithm: o.algorithm });
        return ['grow', performance.now() - t];
      }
    } catch {
      return ['refused', performance.now() - t];
    }
  };
  for (let i = 0; i < 2000; i++) pureOne(picks[i % picks.length]!);
  for (const o of picks) {
    const [k, t] = pureOne(o);
    pure[k].push(t);
  }
  const part = (k: Outcome) => {
    const db = summarize(ms[k]);
    const p = summarize(pure[k].map((x) => x * 1000));
    return {
      decisions: ms[k].length,
      decisionMs: db,
      withSubscriptionLockMs: summarize(locked[k]),
      pureDecisionUs: p,
      ratioToPure: { p50: ratio(db.p50 * 1000, p.p50), p99: ratio(db.p99 * 1000, p.p99) },
    };
  };
  const out = {
    decisions: DECISIONS, organizationsSampled: piecesOf.size, chargeBytes: CHARGE, wallSeconds: round(wall / 1000, 2),
    transaction: 'db.transaction(): lockSubscription, placeRecipient(ctx, s, "mailbox", new mailbox, 1 GiB), then rolled back (every sample sees the same state)',
    pureBaseline: `placeMailbox(org pieces, their stores) and, when nothing fits, growForRecipient over all ${allStores.length} mailbox stores (in-memory arrays read beforehand)`,
    all: { decisionMs: summarize([...ms.fit, ...ms.grow, ...ms.refused]) },
    fits: part('fit'),
    grows: part('grow'),
    refused: { decisions: ms.refused.length, codes, decisionMs: summarize(ms.refused) },
  };
  progress(`  decision p50/p99 (ms): fits ${out.fits.decisionMs.p50}/${out.fits.decisionMs.p99} (${out.fits.decisions}), grows ${out.grows.decisionMs.p50}/${out.grows.decisionMs.p99} (${out.grows.decisions}); pure grow p99 ${out.grows.pureDecisionUs.p99} us`);
  return out;
}

/** Precise summaries for sub-millisecond samples (lib's summarize rounds to 0.01 ms). */
function summarizeFine(samples: number[]): LatencySummary {
  const s = summarize(samples.map((x) => x * 1000));
  return { n: s.n, p50: round(s.p50 / 1000, 3), p95: round(s.p95 / 1000, 3), p99: round(s.p99 / 1000, 3), max: round(s.max / 1000, 3), mean: round(s.mean / 1000, 3) };
}

/**
 * CREATES mailbox creates through engine.submit, one at a time (each its own transaction and commit), in
 * random organizations; split by whether the organization's allocation grew.
 */
async function benchCreates(platform: Platform, w: World, seed: number, prefix: string) {
  const { db } = platform.store;
  const r = rng(seed);
  const grownOf = async (orgId: string) => Number((await db.selectFrom('org_subscriptions').select('grown_bytes').where('org_id', '=', orgId).executeTakeFirstOrThrow()).grown_bytes);
  const ms: Record<'fit' | 'grow', number[]> = { fit: [], grow: [] };
  const errors: Record<string, number> = {};
  for (let i = 0; i < 50; i++) await platform.engine.submit(SYSTEM, MAILBOX_PROCS.createMailbox, mailboxInput(w, w.orgs[Math.floor(r() * ORGS)]!, `${prefix}w`)).catch(() => {});
  for (let i = 0; i < CREATES; i++) {
    const o = w.orgs[Math.floor(r() * ORGS)]!;
    const g = await grownOf(o.id);
    const t0 = performance.now();
    try {
      await platform.engine.submit(SYSTEM, MAILBOX_PROCS.createMailbox, mailboxInput(w, o, prefix));
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'unknown';
      errors[code] = (errors[code] ?? 0) + 1;
      continue;
    }
    const t = performance.now() - t0;
    ms[(await grownOf(o.id)) !== g ? 'grow' : 'fit'].push(t);
  }
  return { creates: CREATES, rejected: errors, allMs: summarize([...ms.fit, ...ms.grow]), fitsMs: summarize(ms.fit), growsMs: summarize(ms.grow) };
}

/** GETs through app.inject (in-process HTTP: routing, auth, validation, serialisation), sequential. */
async function benchListing(platform: Platform, w: World, token: string) {
  const app = platform.app!;
  const headers = { authorization: `Bearer ${token}` };
  const timed = async (url: string) => {
    const get = async () => {
      const t0 = performance.now();
      const res = await app.inject({ method: 'GET', url, headers });
      const t = performance.now() - t0;
      if (res.statusCode !== 200) throw new Error(`GET ${url} -> ${res.statusCode} ${res.body.slice(0, 300)}`);
      return { t, body: res.body };
    };
    for (let i = 0; i < 20; i++) await get();
    const ms: number[] = [];
    let items = -1;
    for (let i = 0; i < LIST_ITERATIONS; i++) {
      const x = await get();
      ms.push(x.t);
      if (i === 0) items = (JSON.parse(x.body) as { items: unknown[] }).items.length;
    }
    return { url: url.replace(/cursor=[^&]+/, 'cursor=…'), itemsPerPage: items, ...summarize(ms) };
  };
  const srv = w.servers[Math.floor(SERVERS / 2)]!;
  const ofServer = w.stores.filter((s) => s.serverId === srv).map((s) => s.id).sort();
  const all = w.stores.map((s) => s.id).sort();
  const cursorAt = (ids: string[], k: number) => encodeCursor(ids[Math.min(ids.length - 1, k)]!);
  const out: Record<string, unknown> = {
    iterations: LIST_ITERATIONS,
    serverStoresFirstPage: await timed(`/api/v1/mail-servers/${srv}/stores?limit=50`),
    serverStoresDeepPage: await timed(`/api/v1/mail-servers/${srv}/stores?limit=50&cursor=${cursorAt(ofServer, Math.floor(ofServer.length * 0.9) - 1)}`),
    serverStoresAllOnePage: await timed(`/api/v1/mail-servers/${srv}/stores?limit=${Math.min(1000, PER_SERVER)}`),
  };
  const platformWide = platform.app!.hasRoute({ method: 'GET', url: '/api/v1/mailstores' });
  if (platformWide) {
    out.mailstoresFirstPage = await timed('/api/v1/mailstores?limit=50');
    out.mailstoresDeepPage = await timed(`/api/v1/mailstores?limit=50&cursor=${cursorAt(all, Math.floor(all.length * 0.9) - 1)}`);
    out.mailstoresActiveMailboxFirstPage = await timed('/api/v1/mailstores?limit=50&purpose=mailbox&state=active');
    out.mailstoresAllOnePage = await timed(`/api/v1/mailstores?limit=${Math.min(1000, all.length)}`);
  } else {
    out.mailstores = 'GET /api/v1/mailstores does not exist in this build';
  }
  const p99s = Object.entries(out).filter(([, v]) => typeof v === 'object').map(([k, v]) => `${k} ${(v as any).p99}`);
  progress(`  listing p99 (ms): ${p99s.join(', ')}`);
  return out;
}

/** Where a grow decision's time goes on this database: each query of placeRecipient's grow path, alone. */
async function profileGrow(platform: Platform, w: World) {
  const { db, dialect } = platform.store;
  const o = w.orgs.find((x) => x.kind === 'dynamic')!;
  const steps: Record<string, number[]> = { lockSubscription: [], orgPieces: [], growthCandidates: [], growForRecipient: [], countOnStore: [], addPiece: [], growSubscription: [], movePiece: [] };
  const rows = (await db.selectFrom('mailstores').selectAll().where('purpose', '=', 'mailbox').where('sharing', '=', 'shared').where('state', '=', 'active').execute());
  for (let i = 0; i < 300; i++) {
    await db.transaction().execute(async (tx) => {
      const tick = (() => {
        let t = performance.now();
        return (k: string) => {
          const n = performance.now();
          if (i >= 50 && steps[k]) steps[k].push(n - t);
          t = n;
        };
      })();
      const ctx = { tx, now: Date.now(), dialect };
      tick('start');
      const s = await lockSubscription(ctx, o.id);
      tick('lockSubscription');
      const { pieces, stores: own } = await orgPieces(tx, o.id, 'mailbox');
      tick('orgPieces');
      const others = await growthCandidates(tx, 'mailbox', 'shared', o.id, CHARGE, o.algorithm, new Set());
      const mine = new Set(own.map((x) => x.id));
      const st = [...own, ...others.filter((x) => !mine.has(x.id))];
      tick('growthCandidates');
      const g = growForRecipient(st, pieces, { orgId: o.id, bytes: CHARGE, sharing: 'shared', algorithm: o.algorithm });
      tick('growForRecipient');
      await tx.updateTable('mailstores').set({ mailbox_count: sql`mailbox_count + 1`, updated_at: ctx.now }).where('id', '=', g.storeId)
        .where((eb) => eb.or([eb('max_mailboxes', 'is', null), eb('mailbox_count', '<', eb.ref('max_mailboxes'))])).executeTakeFirst();
      tick('countOnStore');
      await tx.updateTable('mailstores').set({ allocated_bytes: sql`allocated_bytes + ${g.bytes}`, updated_at: ctx.now }).where('id', '=', g.storeId).where(sql<boolean>`allocated_bytes + ${g.bytes} <= capacity_bytes`).executeTakeFirst();
      const has = await tx.selectFrom('store_allocations').select('org_id').where('org_id', '=', o.id).where('store_id', '=', g.storeId).executeTakeFirst();
      if (has) await tx.updateTable('store_allocations').set({ bytes: sql`bytes + ${g.bytes}` }).where('org_id', '=', o.id).where('store_id', '=', g.storeId).execute();
      else await tx.insertInto('store_allocations').values({ org_id: o.id, store_id: g.storeId, reseller_id: s.sub.reseller_id, bytes: g.bytes, charged_bytes: 0, mailbox_count: 0 }).execute();
      tick('addPiece');
      await tx.updateTable('org_subscriptions').set({ grown_bytes: Number(s.sub.grown_bytes) + g.bytes, updated_at: ctx.now }).where('org_id', '=', o.id).execute();
      tick('growSubscription');
      await tx.updateTable('store_allocations').set({ charged_bytes: sql`charged_bytes + ${CHARGE}`, mailbox_count: sql`mailbox_count + 1` }).where('org_id', '=', o.id).where('store_id', '=', g.storeId).execute();
      tick('movePiece');
      throw ROLLBACK;
    }).catch((e) => {
      if (e !== ROLLBACK) throw e;
    });
  }
  return {
    note: `the grow path of placeRecipient replayed step by step (same queries), ${steps.lockSubscription!.length} samples, rolled back; p50 / p99 ms per step; the pool holds ${rows.length} active shared stores`,
    steps: Object.fromEntries(Object.entries(steps).map(([k, v]) => [k, { p50: summarizeFine(v).p50, p99: summarizeFine(v).p99 }])),
  };
}

// ---------------------------------------------------------------- per database

async function analyze(tdb: TestDatabase): Promise<void> {
  const c = new pg.Client({ connectionString: tdb.url });
  await c.connect();
  await c.query('ANALYZE');
  await c.end();
}

async function benchDatabase(dialect: Dialect) {
  const tdb = await createTestDatabase(dialect);
  try {
    const config = configFromEnv({}, { dataDir: tdb.dir, databaseUrl: tdb.url, filesRoot: join(tdb.dir, 'homes'), host: '127.0.0.1', port: 0, logLevel: 'warn' });
    const init = await initPlatform(config);
    const platform = await createPlatform(config, { api: true, logger: false, migrate: false, workers: 0 });
    try {
      const out: Record<string, unknown> = {};
      progress(`[${dialect}] registering ${SERVERS} servers x ${PER_SERVER} stores, subscribing ${ORGS} organizations`);
      let t0 = performance.now();
      const reg = await registerStores(platform);
      const storesSeconds = round((performance.now() - t0) / 1000, 2);
      t0 = performance.now();
      const subs = await subscribeOrgs(platform);
      const w: World = { ...reg, ...subs };
      const orgsSeconds = round((performance.now() - t0) / 1000, 2);
      progress(`  stores ${storesSeconds} s, organizations ${orgsSeconds} s`);

      if (dialect === 'postgres') await analyze(tdb);
      progress(`  (3) ${CREATES} mailbox creates on the empty platform`);
      const createsEmpty = await benchCreates(platform, w, Number(opt.seed) + 1, 'e');

      progress(`  placing ${ORGS * PER_ORG} mailboxes`);
      const bulk = opt.load === 'sql' || (opt.load === 'auto' && dialect === 'postgres');
      const load = bulk ? await loadMailboxesSql(platform, w) : await loadMailboxes(platform, w);
      // some stores that hold allocations stop taking new ones (their pieces stay and count)
      t0 = performance.now();
      const drained: string[] = [];
      for (let i = 0; i < SERVERS; i++) {
        for (const j of [11, 55]) {
          const st = w.stores[i * PER_SERVER + j];
          if (!st) continue;
          await platform.engine.submit(SYSTEM, RP.updateStore, { serverId: st.serverId, storeId: st.id, state: 'draining' });
          drained.push(st.id);
        }
      }
      t0 = performance.now();
      const consistency = await checkConsistency(platform.store.db);
      const fill = await storeFill(platform.store.db);
      progress(`  consistent (${round((performance.now() - t0) / 1000, 1)} s to check): ${consistency.mailboxes} mailboxes, ${consistency.pieces} pieces; stores ${fill.allocatedPercent} % allocated`);
      if (dialect === 'postgres') await analyze(tdb);
      out.setup = {
        storesSeconds, organizationsSeconds: orgsSeconds, load, drainedAfterLoad: drained.length, consistency, fill,
        stores: `${SERVERS} servers x ${PER_SERVER} shared mailbox stores via resources.create_mailstore, 64-256 GiB, every 5th with maxMailboxes 1000, 3 per server draining from the start`,
        organizations: `${ORGS} via PP.subscribe: even = fixed ${FIXED_BYTES / GiB} GiB, odd = dynamic (half from 0, half from ${DYNAMIC_BASE / GiB} GiB); placement tightPack / level / minStoreCount in turn; 1 GiB mailboxes`,
        postgresAnalyzed: dialect === 'postgres',
      };

      progress(`  (2) ${DECISIONS} placement decisions`);
      out.decisions = await benchDecisions(platform, w);
      out.growProfile = await profileGrow(platform, w);
      progress(`  (3) ${CREATES} mailbox creates at size`);
      const createsFull = await benchCreates(platform, w, Number(opt.seed) + 2, 'f');
      out.creates = {
        note: 'engine.submit(SYSTEM, mail.create_mailbox) one at a time (own transaction and commit), random organizations; empty = the same stores and organizations before any mailbox was placed',
        empty: createsEmpty,
        atSize: createsFull,
        atSizeToEmpty: {
          p50: ratio(createsFull.allMs.p50, createsEmpty.allMs.p50), p99: ratio(createsFull.allMs.p99, createsEmpty.allMs.p99),
          growsP50: ratio(createsFull.growsMs.p50, createsEmpty.growsMs.p50), fitsP50: ratio(createsFull.fitsMs.p50, createsEmpty.fitsMs.p50),
        },
      };
      progress(`  create p50/p99 (ms): empty ${createsEmpty.allMs.p50}/${createsEmpty.allMs.p99}, at size ${createsFull.allMs.p50}/${createsFull.allMs.p99}`);
      progress('  (4) store listings');
      out.listing = await benchListing(platform, w, init.token!);
      out.consistencyAtEnd = await checkConsistency(platform.store.db);
      return out;
    } finally {
      await platform.close();
    }
  } finally {
    await tdb.destroy();
  }
}

function summaryText(result: any): string {
  const lines: string[] = [`Placement benchmark, ${SERVERS * PER_SERVER} stores, ${ORGS} organizations, ${ORGS * PER_ORG} mailboxes (target: decision p99 <= 1 ms on SQLite)`];
  for (const [d, r] of Object.entries<any>(result.databases)) {
    const dd = r.decisions;
    const f = (s: any) => `p50 ${s.p50} p99 ${s.p99} max ${s.max} ms`;
    lines.push(`[${d}] setup: stores ${r.setup.storesSeconds} s, orgs ${r.setup.organizationsSeconds} s, ${r.setup.load.accepted} mailboxes ${r.setup.load.seconds} s (${r.setup.load.mailboxesPerSec ? `${r.setup.load.mailboxesPerSec}/s through the engine` : 'SQL bulk load'}); ${r.setup.fill.allocatedPercent} % of capacity allocated`);
    lines.push(`  decision, fits  (${dd.fits.decisions}): ${f(dd.fits.decisionMs)}; pure p50 ${dd.fits.pureDecisionUs.p50} p99 ${dd.fits.pureDecisionUs.p99} us; ratio p50 ${dd.fits.ratioToPure.p50}x p99 ${dd.fits.ratioToPure.p99}x`);
    lines.push(`  decision, grows (${dd.grows.decisions}): ${f(dd.grows.decisionMs)}; pure p50 ${dd.grows.pureDecisionUs.p50} p99 ${dd.grows.pureDecisionUs.p99} us; ratio p50 ${dd.grows.ratioToPure.p50}x p99 ${dd.grows.ratioToPure.p99}x`);
    lines.push(`  decision, all   (${dd.all.decisionMs.n}): ${f(dd.all.decisionMs)}${dd.refused.decisions ? `; refused ${dd.refused.decisions} ${JSON.stringify(dd.refused.codes)}` : ''}`);
    lines.push(`  grow steps p50/p99 ms: ${Object.entries<any>(r.growProfile.steps).map(([k, v]) => `${k} ${v.p50}/${v.p99}`).join(', ')}`);
    const c = r.creates;
    lines.push(`  create: empty ${f(c.empty.allMs)}; at size ${f(c.atSize.allMs)}; at size / empty p50 ${c.atSizeToEmpty.p50}x p99 ${c.atSizeToEmpty.p99}x (grows p50 ${c.atSizeToEmpty.growsP50}x, fits p50 ${c.atSizeToEmpty.fitsP50}x)`);
    for (const [k, v] of Object.entries<any>(r.listing)) if (typeof v === 'object') lines.push(`  ${k} (${v.itemsPerPage} items): p50 ${v.p50} p99 ${v.p99} ms`);
  }
  return lines.join('\n');
}

export async function runPlacementBench(): Promise<void> {
  const dbs: Dialect[] = opt.db === 'both' ? ['sqlite', 'postgres'] : [opt.db as Dialect];
  const result: Record<string, unknown> = {
    suite: 'placement', at: new Date().toISOString(), machine: machineInfo(),
    options: { servers: SERVERS, storesPerServer: PER_SERVER, orgs: ORGS, perOrg: PER_ORG, decisions: DECISIONS, creates: CREATES, concurrency: Number(opt.concurrency), listIterations: LIST_ITERATIONS, seed: Number(opt.seed) },
    databases: {},
  };
  for (const d of dbs) (result.databases as any)[d] = await benchDatabase(d);
  (result as any).machineAfter = { loadAverage: (machineInfo() as any).loadAverage };
  const json = JSON.stringify(result, null, 2);
  mkdirSync(resolve('.bench'), { recursive: true });
  writeFileSync(resolve('.bench/placement-last.json'), json);
  process.stderr.write(`\n${summaryText(result)}\n\n`);
  process.stdout.write(`${json}\n`);
}
