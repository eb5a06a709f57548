import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { sql } from 'kysely';
import { newId } from '../src/core/ids.js';
import { migrate } from '../src/store/migrate.js';
import { MIGRATIONS } from '../src/migrations.js';
import { createTestDatabase } from '../src/store/testing.js';
import type { Db, Dialect, Store } from '../src/store/db.js';
import { DomainCache } from '../src/transport/domain-cache.js';
import { FULL_PAGE, loadAllDomains } from '../src/transport/domain-cache-source.js';
import { decodeSnapshot, encodeSnapshot, writeFileAtomic } from '../src/transport/domain-cache-snapshot.js';
import { machineInfo, mb, progress, round, summarize } from './lib.js';
import { prng } from '../test/prng.js';

/**
 * `npm run bench -- --suite domain-cache`: the transport agent's domain cache (issue 6 item 1) at 100,000 accepted
 * domains — full build, lookup cost, memory, snapshot, and how long a committed change takes to be visible in the
 * cache (SQLite: the change-log poller; PostgreSQL: LISTEN/NOTIFY). See bench/README.md. Nothing is asserted.
 */

/* eslint-disable @typescript-eslint/no-explicit-any */

const { values: opt } = parseArgs({
  options: {
    suite: { type: 'string' },
    db: { type: 'string', default: 'both' },
    domains: { type: 'string', default: '100000' },
    'per-org': { type: 'string', default: '10' },
    'orgs-per-reseller': { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '5' },
    lookups: { type: 'string', default: '2000000' },
    changes: { type: 'string', default: '200' },
    seed: { type: 'string', default: '6' },
  },
  allowPositionals: false,
  strict: false,
});

const DOMAINS = Number(opt.domains);
const PER_ORG = Number(opt['per-org']);
const ORGS = Math.ceil(DOMAINS / PER_ORG);
const ORGS_PER_RESELLER = Number(opt['orgs-per-reseller']);
const ROUNDS = Number(opt.rounds);
const LOOKUPS = Number(opt.lookups);
const CHANGES = Number(opt.changes);

// a full collection between heap readings, without asking for node --expose-gc
v8.setFlagsFromString('--expose-gc');
const gc: () => void = vm.runInNewContext('gc');
const heapAfterGc = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

interface Layout {
  resellers: string[];
  orgs: { id: string; resellerId: string }[];
  names: string[];
}

/**
 * Setup, not measured: resellers of ORGS_PER_RESELLER organizations, each organization PER_ORG accepted domains —
 * the first authoritative, the last an alias of the first, one internal relay, the rest authoritative — written
 * straight into the tables in multi-row INSERTs (the triggers of 0017 fire as for any write).
 */
async function load(db: Db): Promise<Layout> {
  const now = Date.now();
  const resellers: string[] = [];
  const orgs: { id: string; resellerId: string }[] = [];
  const names: string[] = [];
  const rRows: any[] = [];
  const oRows: any[] = [];
  const dRows: any[] = [];
  const aRows: any[] = [];
  for (let i = 0; i < ORGS; i++) {
    if (i % ORGS_PER_RESELLER === 0) {
      const id = newId('reseller');
      resellers.push(id);
      rRows.push({ id, name: `bench-rsl-${resellers.length}`, display_name: 'bench', state: 'active', created_at: now, updated_at: now });
    }
    const resellerId = resellers.at(-1)!;
    const org = { id: newId('organization'), resellerId };
    orgs.push(org);
    oRows.push({ id: org.id, reseller_id: resellerId, name: `bench-org-${i}`, display_name: 'bench', state: 'active', created_at: now, updated_at: now });
    let primary = '';
    for (let j = 0; j < PER_ORG && names.length < DOMAINS; j++) {
      const id = newId('domain');
      const name = `d${j}-o${i}.bench.example`;
      names.push(name);
      dRows.push({ id, org_id: org.id, reseller_id: resellerId, name, created_at: now });
      if (j === 0) primary = id;
      const alias = j === PER_ORG - 1 && j > 0;
      aRows.push({ domain_id: id, org_id: org.id, reseller_id: resellerId, name, type: j === 1 ? 'internal_relay' : 'authoritative',
        alias_of: alias ? primary : null, shared_domain_id: null, created_at: now, updated_at: now });
    }
  }
  await db.transaction().execute(async (tx) => {
    for (const [table, rows] of [['resellers', rRows], ['organizations', oRows], ['domains', dRows], ['accepted_domains', aRows]] as const) {
      for (let i = 0; i < rows.length; i += 500) await tx.insertInto(table).values(rows.slice(i, i + 500)).execute();
    }
  });
  return { resellers, orgs, names };
}

/** ms of loadAllDomains (the full refresh's reads, without building the maps), in a frame of its own. */
async function timeFullQuery(db: Db, dialect: Dialect): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t = performance.now();
    await loadAllDomains(db, FULL_PAGE[dialect]);
    ms.push(performance.now() - t);
  }
  return ms;
}

/** ns per call of `fn(keys[i % n])`, over `ops` calls (after one unmeasured pass). */
function nsPerOp(keys: string[], ops: number, fn: (k: string) => unknown): number {
  let sink = 0;
  for (let i = 0; i < Math.min(ops, keys.length); i++) if (fn(keys[i]!) !== undefined) sink++;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) if (fn(keys[i % keys.length]!) !== undefined) sink++;
  const ns = Number(process.hrtime.bigint() - t0) / ops;
  if (sink === -1) console.log(sink);
  return round(ns, 1);
}

/** Wait until `check()` holds, checking after every cache update (and once right away); ms since `t0`. */
function visible(cache: DomainCache, check: () => boolean, t0: number, timeoutMs = 30_000): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    if (check()) return resolvePromise(performance.now() - t0);
    const timer = setTimeout(() => {
      off();
      reject(new Error('change not visible within 30 s'));
    }, timeoutMs);
    const off = cache.onUpdate(() => {
      if (!check()) return;
      clearTimeout(timer);
      off();
      resolvePromise(performance.now() - t0);
    });
  });
}

async function benchDatabase(dialect: Dialect): Promise<Record<string, unknown>> {
  const out: Record<string, any> = {};
  const tdb = await createTestDatabase(dialect);
  const store: Store = tdb.open();
  const dir = mkdtempSync(join(tmpdir(), 'hmc-bench-domain-cache-'));
  try {
    await migrate(store, MIGRATIONS);
    progress(`${dialect}: loading ${DOMAINS} accepted domains in ${ORGS} organizations`);
    let t = performance.now();
    const layout = await load(store.db);
    if (dialect === 'postgres') await sql`ANALYZE`.execute(store.db);
    out.setup = { domains: layout.names.length, organizations: layout.orgs.length, resellers: layout.resellers.length, seconds: round((performance.now() - t) / 1000, 1) };

    progress(`${dialect}: start, heap, full refreshes`);
    // heap first, before any read of all rows: a suspended async frame can keep its last awaited value alive
    const heapBefore = heapAfterGc();
    // no snapshot file here: its writes would overlap the timed refreshes (measured on their own below)
    const cache = new DomainCache({ store, databaseUrl: tdb.url, snapshotPath: null });
    t = performance.now();
    await cache.start();
    const startMs = performance.now() - t;
    await cache.idle();
    const heapAfter = heapAfterGc();
    const fullMs: number[] = [];
    const stall = monitorEventLoopDelay({ resolution: 5 });
    stall.enable();
    for (let i = 0; i < ROUNDS; i++) {
      t = performance.now();
      await cache.refresh();
      fullMs.push(performance.now() - t);
    }
    stall.disable();
    const queryMs = await timeFullQuery(store.db, dialect);
    out.fullBuild = {
      domains: cache.size, startMs: round(startMs), refreshMs: summarize(fullMs),
      refreshEventLoopMaxStallMs: round(stall.max / 1e6), queryMs: summarize(queryMs),
      heapDeltaMB: mb(heapAfter - heapBefore), heapBytesPerDomain: Math.round((heapAfter - heapBefore) / cache.size),
    };

    progress(`${dialect}: lookups`);
    const rnd = prng(Number(opt.seed));
    const shuffled = [...layout.names].sort(() => rnd() - 0.5);
    const misses = shuffled.map((n) => `x${n}`);
    const upper = shuffled.map((n) => n.toUpperCase());
    const addresses = shuffled.map((n) => `someone@${n}`);
    const missAddresses = misses.map((n) => `someone@${n}`);
    out.lookupNs = {
      note: 'sameString: the same key strings again and again (V8 caches a string\'s hash); orgOfAddress: the domain sliced out of each address, a new string each time, as from the wire',
      hitSameString: nsPerOp(shuffled, LOOKUPS, (k) => cache.lookup(k)),
      missSameString: nsPerOp(misses, LOOKUPS, (k) => cache.lookup(k)),
      orgOfAddressHit: nsPerOp(addresses, LOOKUPS, (k) => cache.orgOfAddress(k)),
      orgOfAddressMiss: nsPerOp(missAddresses, LOOKUPS, (k) => cache.orgOfAddress(k)),
      upperCaseHit: nsPerOp(upper, LOOKUPS, (k) => cache.lookup(k)),
      unicodeIdnMiss: nsPerOp(['bücher.example', 'straße.example'], Math.min(LOOKUPS, 200_000), (k) => cache.lookup(k)),
    };

    progress(`${dialect}: snapshot`);
    const domains = layout.names.map((n) => cache.lookup(n)!);
    const encodeStall = monitorEventLoopDelay({ resolution: 5 });
    encodeStall.enable();
    const snapT = performance.now();
    const text = await encodeSnapshot({ refreshedAt: Date.now(), domains });
    const encodeMs = performance.now() - snapT;
    encodeStall.disable();
    t = performance.now();
    await writeFileAtomic(join(dir, 'bench-snapshot.json'), text);
    const writeMs = performance.now() - t;
    t = performance.now();
    decodeSnapshot(text);
    out.snapshot = { bytes: Buffer.byteLength(text), encodeMs: round(encodeMs), encodeEventLoopMaxStallMs: round(encodeStall.max / 1e6), writeMs: round(writeMs), decodeMs: round(performance.now() - t) };

    progress(`${dialect}: ${CHANGES} changes, each awaited in the cache`);
    const added: number[] = [];
    const suspended: number[] = [];
    const now = Date.now();
    for (let i = 0; i < CHANGES; i++) {
      // a random pause over two SQLite poll periods: commits land anywhere in the period, as real changes do
      // (the previous change became visible right at a poll, so a short fixed pause would bias every sample)
      await new Promise((r) => setTimeout(r, Math.floor(rnd() * 500)));
      const org = layout.orgs[Math.floor(rnd() * layout.orgs.length)]!;
      if (i % 2 === 0) {
        const id = newId('domain');
        const name = `new-${i}-${org.id.slice(-6).toLowerCase()}.bench.example`;
        await store.db.transaction().execute(async (tx) => {
          await tx.insertInto('domains').values({ id, org_id: org.id, reseller_id: org.resellerId, name, created_at: now }).execute();
          await tx.insertInto('accepted_domains').values({ domain_id: id, org_id: org.id, reseller_id: org.resellerId, name, type: 'authoritative', alias_of: null, shared_domain_id: null, created_at: now, updated_at: now }).execute();
        });
        added.push(await visible(cache, () => cache.lookup(name) !== undefined, performance.now()));
      } else {
        const probe = `d0-o${layout.orgs.indexOf(org)}.bench.example`;
        const to = cache.lookup(probe)!.live ? 'suspended' : 'active';
        await store.db.updateTable('organizations').set({ state: to, updated_at: Date.now() }).where('id', '=', org.id).execute();
        suspended.push(await visible(cache, () => cache.lookup(probe)!.live === (to === 'active'), performance.now()));
      }
    }
    // a reseller suspended and resumed: all of its organizations at once
    const resellerMs: number[] = [];
    const r0 = layout.resellers[0]!;
    const probe = layout.names[0]!;
    for (let i = 0; i < Math.max(2, ROUNDS); i++) {
      const to = i % 2 === 0 ? 'suspended' : 'active';
      await store.db.updateTable('resellers').set({ state: to, updated_at: Date.now() }).where('id', '=', r0).execute();
      resellerMs.push(await visible(cache, () => cache.lookup(probe)!.live === (to === 'active'), performance.now()));
    }
    const hist: any = await cache.registry.getSingleMetric('hmc_domain_cache_refresh_duration_seconds')!.get();
    const of = (kind: string, suffix: string) => hist.values.find((v: any) => v.labels.kind === kind && v.metricName.endsWith(suffix))?.value ?? 0;
    out.changeToVisibleMs = {
      note: 'commit returned → lookup sees it (same process; SQLite poll period 250 ms)',
      domainAdded: summarize(added), organizationStateChanged: summarize(suspended),
      resellerStateChanged: { organizations: Math.min(ORGS_PER_RESELLER, layout.orgs.length), ...summarize(resellerMs) },
      incrementalRefreshMeanMs: round((of('incremental', '_sum') / Math.max(1, of('incremental', '_count'))) * 1000, 3),
      incrementalRefreshes: of('incremental', '_count'),
    };
    await cache.stop();
    return out;
  } finally {
    await store.close();
    await tdb.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runDomainCacheBench(): Promise<void> {
  const dbs: Dialect[] = opt.db === 'both' ? ['sqlite', 'postgres'] : [opt.db as Dialect];
  const result: Record<string, any> = {
    suite: 'domain-cache', at: new Date().toISOString(), machine: machineInfo(),
    options: { domains: DOMAINS, perOrg: PER_ORG, orgsPerReseller: ORGS_PER_RESELLER, rounds: ROUNDS, lookups: LOOKUPS, changes: CHANGES, seed: Number(opt.seed) },
    databases: {},
  };
  for (const d of dbs) result.databases[d] = await benchDatabase(d);
  result.machineAfter = { loadAverage: (machineInfo() as any).loadAverage };
  const json = JSON.stringify(result, null, 2);
  mkdirSync(resolve('.bench'), { recursive: true });
  writeFileSync(resolve('.bench/domain-cache-last.json'), json);
  process.stdout.write(`${json}\n`);
}
