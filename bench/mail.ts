/**
 * Hosted Email benchmark (issue 3): 100,000 mailboxes across 1,000 organizations through the engine
 * (a) in-process and (b) over HTTP with 16 clients, (c) the raw limit (the same mailbox rows by a bare
 * single-row-transaction loop), (d) list and search p99 at that size. Run through `npm run bench -- --suite mail`.
 * Not a test: nothing is asserted; JSON to stdout and .bench/mail-last.json.
 */
import { fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createPlatform, initPlatform } from '../src/app.js';
import { configFromEnv, type Config } from '../src/core/config.js';
import { newId } from '../src/core/ids.js';
import { SYSTEM } from '../src/core/tenancy.js';
import { P } from '../src/directory/procedures.js';
import { PP } from '../src/plans/procedures.js';
import { RP } from '../src/resources/procedures.js';
import { DOMAIN_PROCS } from '../src/mail/domains-procedures.js';
import { MAILBOX_PROCS } from '../src/mail/mailboxes-model.js';
import { encodeCursor } from '../src/store/page.js';
import { createTestDatabase, type TestDatabase } from '../src/store/testing.js';
import { openSqliteWriter, type Dialect } from '../src/store/db.js';
import { compileServer } from './compile.js';
import { machineInfo, mb, pool, progress, round, summarize } from './lib.js';

const { values: opt } = parseArgs({
  options: {
    suite: { type: 'string' },
    db: { type: 'string', default: 'both' },
    orgs: { type: 'string', default: '1000' },
    'per-org': { type: 'string', default: '100' },
    raw: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '64' },
    clients: { type: 'string', default: '16' },
    'list-iterations': { type: 'string', default: '300' },
    only: { type: 'string', default: 'a,b,c,d' },
  },
  allowPositionals: false,
  strict: false,
});

const ORGS = Number(opt.orgs);
const PER_ORG = Number(opt['per-org']);
const N = ORGS * PER_ORG;
const ONLY = new Set(String(opt.only).split(','));
const rate = (n: number, ms: number) => round(n / (ms / 1000), 1);
const GiB = 1024 ** 3;

interface Tenant { orgId: string; domain: string }

/** One reseller, plans and ORGS organizations, each subscribed with an accepted domain (through the engine). */
async function setup(config: Config, tag: string): Promise<{ tenants: Tenant[]; planId: string }> {
  const platform = await createPlatform(config, { api: false, logger: false, migrate: false, workers: 0 });
  try {
    const e = platform.engine;
    // where the mailboxes live: ten shared 8 PiB mailstores (the dynamic plan grows each organization on one of them)
    const srv = (await e.submit<any>(SYSTEM, RP.createServer, { name: `mx-${tag}`, lmtpEndpoint: '127.0.0.1:24', imapEndpoint: '127.0.0.1:143', mailRoot: '/srv/mail' })).result;
    for (let i = 0; i < 10; i++) await e.submit(SYSTEM, RP.createStore, { serverId: srv.id, name: `store-${i}`, capacityBytes: 2 ** 53 });
    const rsl = (await e.submit<any>(SYSTEM, P.createReseller, { name: `mail-${tag}` })).result;
    const orgPlan = (await e.submit<any>(SYSTEM, PP.createOrgPlan, { name: `org-${tag}`, storageBytes: null, dynamicStorage: true })).result;
    const mbxPlan = (await e.submit<any>(SYSTEM, PP.createMailboxPlan, { name: `mbx-${tag}`, issueWarningQuota: GiB, prohibitSendQuota: GiB, prohibitSendReceiveQuota: 2 * GiB })).result;
    const tenants: Tenant[] = new Array(ORGS);
    await pool(ORGS, 32, async (i) => {
      const org = (await e.submit<any>(SYSTEM, P.createOrganization, { resellerId: rsl.id, name: `${tag}-o${i}` })).result;
      const dom = (await e.submit<any>(SYSTEM, P.addDomain, { orgId: org.id, name: `o${i}.${tag}.bench.example` })).result;
      await e.submit(SYSTEM, PP.subscribe, { orgId: org.id, orgPlanId: orgPlan.id });
      await e.submit(SYSTEM, PP.addAvailablePlan, { orgId: org.id, planId: mbxPlan.id });
      await e.submit(SYSTEM, DOMAIN_PROCS.acceptDomain, { orgId: org.id, domainId: dom.id });
      tenants[i] = { orgId: org.id, domain: dom.name };
    });
    return { tenants, planId: mbxPlan.id };
  } finally {
    await platform.close();
  }
}

const mailboxInput = (t: Tenant, planId: string, j: number, prefix: string) => ({ orgId: t.orgId, kind: 'shared', primaryAddress: `${prefix}${j}@${t.domain}`, displayName: `Box ${j}`, planId });

async function benchInProcess(config: Config, tenants: Tenant[], planId: string) {
  const platform = await createPlatform(config, { api: false, logger: false, migrate: false });
  try {
    const errors: Record<string, number> = {};
    let ok = 0;
    const t0 = performance.now();
    await pool(N, Number(opt.concurrency), async (k) => {
      try {
        await platform.engine.submit(SYSTEM, MAILBOX_PROCS.createMailbox, mailboxInput(tenants[k % ORGS]!, planId, Math.floor(k / ORGS), 'p'));
        ok++;
      } catch (e) {
        const code = (e as { code?: string }).code ?? 'unknown';
        errors[code] = (errors[code] ?? 0) + 1;
      }
    });
    const ms = performance.now() - t0;
    progress(`  (a) in-process: ${ok}/${N} mailboxes in ${round(ms / 1000)} s = ${rate(ok, ms)}/s`);
    return { mailboxes: N, organizations: ORGS, concurrency: Number(opt.concurrency), accepted: ok, rejected: errors, seconds: round(ms / 1000), mailboxesPerSec: rate(ok, ms) };
  } finally {
    await platform.close();
  }
}

/** The mailbox row as the engine writes it, for the raw loop. */
function rawRow(t: Tenant, planId: string, reseller: string, i: number, now: number): Record<string, unknown> {
  return {
    id: newId('mailbox'), org_id: t.orgId, reseller_id: reseller, kind: 'shared', user_id: null, display_name: `Raw ${i}`, primary_address: `r${i}@${t.domain}`,
    mailbox_plan_id: planId, plan_version: 1, overrides: '{}', issue_warning_quota: GiB, prohibit_send_quota: GiB, prohibit_send_receive_quota: 2 * GiB,
    max_send_size: 36_700_160, max_receive_size: 36_700_160, recipient_limit: 500, protocols: '["imap"]', external_forwarding: 0, charged_bytes: 2 * GiB,
    hidden: 0, enabled: 1, forward_to: null, forward_mode: null, state: 'active', deleted_at: null, purge_after: null, created_at: now, updated_at: now,
  };
}

async function benchRaw(tdb: TestDatabase, tenants: Tenant[], planId: string, n: number) {
  const store = await (async () => {
    if (tdb.dialect === 'sqlite') return null;
    const c = new pg.Client({ connectionString: tdb.url });
    await c.connect();
    return c;
  })();
  let reseller: string;
  const sample = rawRow(tenants[0]!, planId, 'x', 0, 0);
  const cols = Object.keys(sample);
  let ms: number;
  if (tdb.dialect === 'sqlite') {
    // the platform's own write settings (src/store/db.ts): WAL, synchronous=FULL, foreign keys, in-memory journals
    const db = openSqliteWriter(tdb.sqlitePath!);
    reseller = (db.prepare('SELECT reseller_id FROM organizations WHERE id = ?').get(tenants[0]!.orgId) as { reseller_id: string }).reseller_id;
    const ins = db.prepare(`INSERT INTO mailboxes (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`);
    const begin = db.prepare('BEGIN');
    const commit = db.prepare('COMMIT');
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      begin.run();
      ins.run(...Object.values(rawRow(tenants[i % ORGS]!, planId, reseller, i, Date.now())));
      commit.run();
    }
    ms = performance.now() - t0;
    db.close();
  } else {
    const c = store!;
    reseller = (await c.query('SELECT reseller_id FROM organizations WHERE id = $1', [tenants[0]!.orgId])).rows[0].reseller_id;
    const text = `INSERT INTO mailboxes (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      await c.query('BEGIN');
      await c.query({ name: 'raw_mailbox', text, values: Object.values(rawRow(tenants[i % ORGS]!, planId, reseller, i, Date.now())) });
      await c.query('COMMIT');
    }
    ms = performance.now() - t0;
    await c.end();
  }
  progress(`  (c) raw: ${n} mailbox rows in ${round(ms / 1000)} s = ${rate(n, ms)}/s`);
  return { rows: n, seconds: round(ms / 1000), rowsPerSec: rate(n, ms), transaction: 'BEGIN; INSERT one mailbox row; COMMIT (prepared), one connection' };
}

interface Server { url: string; maxRss(): Promise<number>; stop(): Promise<void> }

let entry: string | null = null;
async function startServer(config: Config): Promise<Server> {
  entry ??= compileServer();
  const child = fork(entry, [], { execArgv: ['--expose-gc', '--max-semi-space-size=8'], env: { ...process.env, HMC_BENCH_CONFIG: JSON.stringify(config) }, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  child.stdout!.pipe(process.stderr);
  const waiters: Array<(m: any) => void> = [];
  child.on('message', (m: any) => waiters.shift()?.(m));
  const next = () => new Promise<any>((res) => waiters.push(res));
  const ready = await next();
  return {
    url: ready.url,
    maxRss: async () => {
      const p = next();
      child.send({ type: 'rss', reset: true });
      return (await p).max;
    },
    stop: async () => {
      const exited = new Promise<void>((res) => child.once('exit', () => res()));
      child.send({ type: 'stop' });
      await exited;
    },
  };
}

function client(base: string, token: string) {
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  return async (method: string, path: string, body?: unknown) => {
    const t0 = performance.now();
    const r = await fetch(base + path, { method, headers: body === undefined ? { authorization: headers.authorization } : headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, ms: performance.now() - t0, body: text };
  };
}

async function benchHttp(server: Server, token: string, tenants: Tenant[], planId: string) {
  const call = client(server.url, token);
  for (let i = 0; i < 200; i++) await call('POST', `/api/v1/organizations/${tenants[i % ORGS]!.orgId}/mailboxes`, { ...mailboxInput(tenants[i % ORGS]!, planId, i, 'w'), orgId: undefined });
  await server.maxRss();
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  const t0 = performance.now();
  await pool(N, Number(opt.clients), async (k) => {
    const t = tenants[k % ORGS]!;
    const { orgId: _o, ...body } = mailboxInput(t, planId, Math.floor(k / ORGS), 'h');
    const r = await call('POST', `/api/v1/organizations/${t.orgId}/mailboxes`, body);
    latencies.push(r.ms);
    statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  });
  const ms = performance.now() - t0;
  const accepted = (statuses['201'] ?? 0) + (statuses['202'] ?? 0);
  const lat = summarize(latencies);
  progress(`  (b) HTTP: ${accepted}/${N} in ${round(ms / 1000)} s = ${rate(accepted, ms)}/s, p50 ${lat.p50} p99 ${lat.p99} ms`);
  return { mailboxes: N, clients: Number(opt.clients), statuses, seconds: round(ms / 1000), mailboxesPerSec: rate(accepted, ms), latencyMs: lat, serverMaxRssMB: mb(await server.maxRss()) };
}

async function benchList(server: Server, token: string, tenants: Tenant[], rowsInDb: number) {
  const call = client(server.url, token);
  const iterations = Number(opt['list-iterations']);
  const t = tenants[Math.floor(ORGS / 2)]!;
  const base = `/api/v1/organizations/${t.orgId}/mailboxes`;
  const timed = async (path: string) => {
    for (let i = 0; i < 20; i++) await call('GET', path);
    const ms: number[] = [];
    let items = -1;
    for (let i = 0; i < iterations; i++) {
      const r = await call('GET', path);
      if (r.status !== 200) throw new Error(`GET ${path} -> ${r.status} ${r.body}`);
      ms.push(r.ms);
      if (i === 0) items = (JSON.parse(r.body) as { items: unknown[] }).items.length;
    }
    return { ...summarize(ms), itemsPerPage: items };
  };
  const all = JSON.parse((await call('GET', `${base}?limit=1000`)).body) as { items: { id: string }[] };
  const deepId = all.items[Math.floor(all.items.length * 0.9)]?.id ?? all.items[0]!.id;
  const first = await timed(`${base}?limit=50`);
  const deep = await timed(`${base}?limit=50&cursor=${encodeCursor(deepId)}`);
  const search = await timed(`${base}?limit=50&q=h5`);
  const orgs = await timed('/api/v1/organizations?limit=50');
  progress(`  (d) p99: mailboxes first page ${first.p99} ms, deep ${deep.p99} ms, ?q= ${search.p99} ms, organizations ${orgs.p99} ms`);
  return { mailboxesInDatabase: rowsInDb, organizationMailboxes: all.items.length, iterations, firstPage: first, deepPage: deep, addressPrefixSearch: { ...search, q: 'h5' }, organizationsFirstPage: orgs };
}

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
    progress(`[${dialect}] setting up ${ORGS} organizations`);
    const s0 = performance.now();
    const { tenants, planId } = await setup(config, 'mail');
    progress(`  setup ${round((performance.now() - s0) / 1000)} s`);
    const out: Record<string, unknown> = { setupSeconds: round((performance.now() - s0) / 1000) };
    let rows = 0;
    if (ONLY.has('a')) {
      out.inProcess = await benchInProcess(config, tenants, planId);
      rows += N;
    }
    if (ONLY.has('c')) {
      out.raw = await benchRaw(tdb, tenants, planId, Number(opt.raw));
      rows += Number(opt.raw);
    }
    if (out.inProcess && out.raw) out.inProcessToRaw = round((out.inProcess as any).mailboxesPerSec / (out.raw as any).rowsPerSec, 3);
    if (ONLY.has('b') || ONLY.has('d')) {
      const server = await startServer(config);
      try {
        if (ONLY.has('b')) {
          out.http = await benchHttp(server, init.token!, tenants, planId);
          rows += N + 200;
        }
        if (ONLY.has('d')) {
          // statistics as autovacuum would have them after 100,000 inserts (the spine's list bench does the same)
          if (dialect === 'postgres') await analyze(tdb);
          out.list = await benchList(server, init.token!, tenants, rows);
        }
      } finally {
        await server.stop();
      }
    }
    return out;
  } finally {
    await tdb.destroy();
  }
}

export async function runMailBench(): Promise<void> {
  const dbs: Dialect[] = opt.db === 'both' ? ['sqlite', 'postgres'] : [opt.db as Dialect];
  const result: Record<string, unknown> = { suite: 'mail', at: new Date().toISOString(), machine: machineInfo(), options: { orgs: ORGS, perOrg: PER_ORG, raw: Number(opt.raw), clients: Number(opt.clients), concurrency: Number(opt.concurrency) }, databases: {} };
  for (const d of dbs) (result.databases as any)[d] = await benchDatabase(d);
  (result as any).machineAfter = { loadAverage: (machineInfo() as any).loadAverage };
  const json = JSON.stringify(result, null, 2);
  mkdirSync(resolve('.bench'), { recursive: true });
  writeFileSync(resolve('.bench/mail-last.json'), json);
  process.stdout.write(`${json}\n`);
}
