/**
 * Data plane benchmark (issue 5): mail through Postfix → LMTP → Dovecot with HMC's SQL lookups (the rendered
 * sqlite:/pgsql: maps and `driver = sql` passdb/userdb on the dp_* views) against the same servers with static
 * tables (Postfix `hash:` maps and a Dovecot `passwd-file` holding the same rows), in the same run; the cost
 * of one lookup in each Postfix map, SQL against hash; Dovecot auth lookups per second on the SQL lookups. Run through `npm run bench -- --suite dataplane`
 * (root: the masters start as root). Not a test: nothing is asserted. JSON to stdout and
 * .bench/dataplane-last.json; see bench/README.md for the fields.
 *
 * The static variant is benchmark scaffolding, built from whatever the renderer wrote: every SQL map that
 * main.cf/master.cf reference is probed by Postfix itself (`postmap -q -`) with every address and domain found
 * in the dp_* views, the answers become a hash table, and every `driver = sql` passdb/userdb block of
 * dovecot.conf becomes a passwd-file built by running its iterate/password/user queries. So maps the renderer
 * gains later are covered without change here.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { basename, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import bcrypt from 'bcryptjs';
import { sql } from 'kysely';
import type { Db, Dialect } from '../src/store/db.js';
import { renderDataplane, type Manifest } from '../src/dataplane/render.js';
import { down, up } from '../src/dataplane/instance.js';
import { startTestPlatform, type TestPlatform } from '../test/support.js';
import { setupMailOrg } from '../test/mail-support.js';
import { freePorts } from '../test/dataplane-support.js';
import { cpuByProcess, machineInfo, progress, round, summarize, until } from './lib.js';

/* eslint-disable @typescript-eslint/no-explicit-any */

const { values: opt } = parseArgs({
  options: {
    suite: { type: 'string' },
    db: { type: 'string', default: 'both' },
    messages: { type: 'string', default: '1000' },
    mailboxes: { type: 'string', default: '10' },
    sessions: { type: 'string', default: '20' },
    size: { type: 'string', default: '1024' },
    warmup: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '2' },
    'bcrypt-cost': { type: 'string', default: '4' },
    'auth-clients': { type: 'string', default: '8' },
    'auth-seconds': { type: 'string', default: '5' },
    only: { type: 'string', default: 'maps,throughput,auth' },
    'map-probes': { type: 'string', default: '20000' },
  },
  // the suites share the command line (transport.ts imports dataplane.ts): another suite's option values pass
  allowPositionals: true,
  strict: false,
});

const MESSAGES = Number(opt.messages);
const MAILBOXES = Number(opt.mailboxes);
/** Concurrent SMTP sessions in all (split over one smtp-source per mailbox). */
const SESSIONS = Number(opt.sessions);
const SIZE = Number(opt.size);
const WARMUP = Number(opt.warmup);
const ROUNDS = Number(opt.rounds);
const BCRYPT_COST = Number(opt['bcrypt-cost']);
const AUTH_CLIENTS = Number(opt['auth-clients']);
const AUTH_SECONDS = Number(opt['auth-seconds']);
const ONLY = new Set(String(opt.only).split(','));
const MAP_PROBES = Number(opt['map-probes']);
const SENDER = 'bench@remote.example';
const rate = (n: number, ms: number) => round(n / (ms / 1000), 1);

/** sql: as rendered (Dovecot's auth cache on); static: hash tables and passwd-files; sql-uncached: sql without the auth cache. */
type Variant = 'sql' | 'static' | 'sql-uncached';

export interface Mailbox { login: string; password: string; home: string }

interface World {
  manifest: Manifest;
  mailboxes: Mailbox[];
  /** main.cf, master.cf and dovecot.conf per variant (path → text). */
  files: Record<Variant, Record<string, string>>;
  /** The candidate keys the static tables were built from. */
  keys: string[];
  staticTables: { keys: number; postfix: Array<{ replaced: string; by: string; entries: number }>; dovecot: Awaited<ReturnType<typeof staticDovecot>> };
  current: Variant | null;
}

// ---------------------------------------------------------------- setup through the API

/** A mail server, its stores, an organization and MAILBOXES users with mailboxes, all through the API. */
export async function provision(t: TestPlatform, work: string, serverName: string): Promise<{ mailboxes: Mailbox[]; smtpPort: number }> {
  const [smtpPort, lmtpPort, imapPort] = (await freePorts(3)) as [number, number, number];
  const srv = await t.ok('POST', '/api/v1/mail-servers', { name: serverName, lmtpEndpoint: `127.0.0.1:${lmtpPort}`, imapEndpoint: `127.0.0.1:${imapPort}`, mailRoot: join(work, 'mail') });
  await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'bench-store', capacityBytes: 2 ** 50 });
  await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'bench-public', purpose: 'public_folder', capacityBytes: 2 ** 50 });
  const m = await setupMailOrg(t, 'dpb', { defaultStores: false });
  const made: Array<{ login: string; password: string }> = [];
  for (let i = 0; i < MAILBOXES; i++) {
    const login = `u${i}@${m.domainName}`;
    const password = `pw-${randomBytes(8).toString('hex')}`;
    // pre-hashed, as an import brings them: the API stores the hash as given
    const user = await t.ok('POST', `${m.orgUrl}/users?wait=true`, { login, passwordHash: `{BLF-CRYPT}${bcrypt.hashSync(password, BCRYPT_COST)}` });
    await t.ok('POST', `${m.orgUrl}/mailboxes?wait=true`, { kind: 'user', userId: user.id, planId: m.mailboxPlanId });
    made.push({ login, password });
  }
  const rows = await t.platform.store.db.selectFrom('dp_users').select(['login', 'home']).where('server_id', '=', srv.id).execute();
  const homes = new Map(rows.map((r) => [String(r.login), String(r.home)]));
  const mailboxes = made.map((u) => {
    const home = homes.get(u.login);
    if (!home) throw new Error(`${u.login} is not in dp_users`);
    return { ...u, home };
  });
  return { mailboxes, smtpPort };
}

// ---------------------------------------------------------------- the static variant

/**
 * The keys the static tables are probed with: every address and domain in the dp_* views, `@domain`, and
 * each local part on each domain (domain aliases answer `user@alias` through %u/%d in the query).
 */
async function candidateKeys(db: Db, dialect: Dialect): Promise<string[]> {
  const views = dialect === 'sqlite'
    ? await sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'view' AND name LIKE 'dp\\_%' ESCAPE '\\'`.execute(db)
    : await sql<{ name: string }>`SELECT table_name AS name FROM information_schema.views WHERE table_schema = current_schema() AND table_name LIKE 'dp\\_%' ESCAPE '\\'`.execute(db);
  const domainRe = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.[a-z][a-z0-9-]*$/i;
  const addresses = new Set<string>();
  const domains = new Set<string>();
  for (const { name } of views.rows) {
    const rows = await sql<Record<string, unknown>>`SELECT * FROM ${sql.table(name)}`.execute(db);
    for (const row of rows.rows) {
      for (const v of Object.values(row)) {
        if (typeof v !== 'string') continue;
        const at = v.lastIndexOf('@');
        if (at > 0 && /^[^\s'"\\@]+$/.test(v.slice(0, at)) && domainRe.test(v.slice(at + 1))) {
          addresses.add(v);
          domains.add(v.slice(at + 1));
        } else if (domainRe.test(v)) domains.add(v);
      }
    }
  }
  const keys = new Set<string>(addresses);
  const locals = new Set([...addresses].map((a) => a.slice(0, a.lastIndexOf('@'))));
  for (const d of domains) {
    keys.add(d).add(`@${d}`);
    for (const l of locals) keys.add(`${l}@${d}`);
  }
  return [...keys].sort();
}

/** Replace every SQL map of main.cf/master.cf by a hash: table with the same answers for `keys`. */
function staticPostfix(etc: string, keys: string[], out: Record<string, string>): Array<{ replaced: string; by: string; entries: number }> {
  const done: Array<{ replaced: string; by: string; entries: number }> = [];
  const texts = Object.fromEntries(['main.cf', 'master.cf'].map((f) => [f, readFileSync(join(etc, f), 'utf8')]));
  const refs = new Set<string>();
  // a whole pipemap:{…} is one table, and so is proxy:pgsql:… (the static variant reads its hash file directly)
  const tableRef = /\bpipemap:\{[^}]*\}|(?:\bproxy:)?\b(?:sqlite|pgsql|mysql):\/[^\s,}]+/g;
  for (const text of Object.values(texts)) for (const m of text.matchAll(tableRef)) refs.add(m[0]);
  for (const ref of refs) {
    // probed without proxy: (Postfix is not running yet; proxymap answers what the table itself does)
    const q = spawnSync('postmap', ['-c', etc, '-q', '-', ref.replace(/\bproxy:/g, '')], { input: `${keys.join('\n')}\n`, encoding: 'utf8' });
    if (q.error || (q.status !== 0 && q.status !== 1) || /fatal|error/i.test(q.stderr)) throw new Error(`postmap -q - ${ref}: ${q.error?.message ?? q.stderr}`);
    const lines = q.stdout.split('\n').filter(Boolean).map((l) => {
      const tab = l.indexOf('\t');
      return `${l.slice(0, tab)} ${l.slice(tab + 1)}`;
    });
    const file = join(etc, `static-${basename(tablePath(ref), '.cf')}`);
    writeFileSync(file, lines.length ? `${lines.join('\n')}\n` : '');
    execFileSync('postmap', ['-c', etc, `hash:${file}`]);
    for (const f of Object.keys(texts)) texts[f] = texts[f]!.split(ref).join(`hash:${file}`);
    done.push({ replaced: ref, by: `hash:${file}`, entries: lines.length });
  }
  for (const [f, text] of Object.entries(texts)) out[join(etc, f)] = text;
  return done;
}

/** The file of a table reference; for a pipemap, its last table's (the one that answers). */
function tablePath(ref: string): string {
  const last = ref.startsWith('pipemap:') ? ref.slice(ref.lastIndexOf(',') + 1, -1).trim() : ref;
  return last.slice(last.lastIndexOf(':') + 1);
}

/** `key = value` settings of a Dovecot sql args file. */
function sqlSettings(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^\s*([a-z_]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** The service the static passdb answers for: the one the benchmark logs in with (and LMTP needs no passdb). */
const STATIC_SERVICE = 'imap';

/** A Dovecot SQL query with the name (and the service) put in, as Dovecot expands it before querying. */
function expand(query: string, name: string): string {
  const lit = (v: string) => v.replace(/'/g, "''");
  const at = name.lastIndexOf('@');
  const vars: Record<string, string> = {
    u: name, Lu: name.toLowerCase(), n: at < 0 ? name : name.slice(0, at), d: at < 0 ? '' : name.slice(at + 1), s: STATIC_SERVICE,
  };
  return query.replace(/%(%|L?[a-z])/g, (m, v: string) => {
    if (v === '%') return '%';
    const val = vars[v] ?? (v.startsWith('L') && vars[v.slice(1)] !== undefined ? vars[v.slice(1)]!.toLowerCase() : undefined);
    if (val === undefined) throw new Error(`unsupported Dovecot variable ${m} in ${query}`);
    return lit(val);
  });
}

/**
 * Replace the `driver = sql` passdb/userdb blocks of dovecot.conf by passwd-files answering the same names
 * with the same fields: the names are the iterate_query's plus every candidate key (userdb answers for
 * each address of a mailbox). passwd-file fields are space-separated, so a field whose value has spaces is
 * left out and reported; the quota_warning rule (spaces too) becomes one plugin setting with %u for the user, as
 * Dovecot evaluates it on every delivery either way (the bench's mailboxes share one plan, so one rule).
 */
async function staticDovecot(db: Db, conf: string, keys: string[], out: Record<string, string>) {
  let text = readFileSync(conf, 'utf8');
  const blocks = [...text.matchAll(/^(passdb|userdb)\s*\{\n([^{}]*?)^\}\n/gm)].filter((b) => /^\s*driver\s*=\s*sql\s*$/m.test(b[2]!));
  if (blocks.length === 0) throw new Error(`no driver = sql block in ${conf}`);
  const dir = resolve(conf, '..');
  const dovecotGid = Number(execFileSync('getent', ['group', 'dovecot'], { encoding: 'utf8' }).split(':')[2]);
  const dropped = new Set<string>();
  /** quota_warning rules (they have spaces), with the user's name as %u: one rule for all becomes a plugin setting. */
  const warnings = new Set<string>();
  let warned = 0;
  let user = '';
  const field = (k: string, v: unknown) => {
    if (v === null || v === undefined) return [];
    if (k === 'userdb_quota_warning') {
      warnings.add(String(v).split(user).join('%u'));
      warned++;
      return [];
    }
    if (/\s/.test(String(v))) {
      dropped.add(k);
      return [];
    }
    return [`${k}=${String(v)}`];
  };
  const entries: Record<string, number> = {};
  for (const [i, b] of blocks.entries()) {
    const kind = b[1] as 'passdb' | 'userdb';
    const argsFile = /^\s*args\s*=\s*(\S+)\s*$/m.exec(b[2]!)?.[1];
    if (!argsFile) throw new Error(`a ${kind} sql block without args in ${conf}`);
    const s = sqlSettings(argsFile);
    const query = s[kind === 'passdb' ? 'password_query' : 'user_query'];
    if (!query) throw new Error(`no ${kind === 'passdb' ? 'password_query' : 'user_query'} in ${argsFile}`);
    const names = new Set(keys.filter((k) => k.includes('@') && !k.startsWith('@')));
    if (s.iterate_query) for (const r of (await sql.raw<{ user: string }>(s.iterate_query).execute(db)).rows) names.add(String(r.user));
    const lines: string[] = [];
    for (const name of [...names].sort()) {
      const row = (await sql.raw<Record<string, unknown>>(expand(query, name)).execute(db)).rows[0];
      if (!row) continue;
      if (kind === 'passdb') {
        const extra = Object.entries(row).filter(([k]) => k !== 'user' && k !== 'password').flatMap(([k, v]) => field(k, v));
        lines.push(`${String(row.user ?? name)}:${String(row.password)}::::::${extra.join(' ')}`);
      } else {
        user = name;
        const extra = Object.entries(row).filter(([k]) => !['uid', 'gid', 'home'].includes(k)).flatMap(([k, v]) => field(`userdb_${k}`, v));
        lines.push(`${name}::${String(row.uid)}:${String(row.gid)}::${String(row.home)}::${extra.join(' ')}`);
      }
    }
    // one file per block: the mailbox userdb and the public-folder userdb are two blocks of one kind
    const file = join(dir, `static-${kind}-${i}.passwd`);
    writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o640 });
    chmodSync(file, 0o640);
    chownSync(file, 0, dovecotGid); // the auth process runs as dovecot
    const scheme = kind === 'passdb' && s.default_pass_scheme ? `scheme=${s.default_pass_scheme} ` : '';
    text = text.replace(b[0], `${kind} {\n  driver = passwd-file\n  args = ${scheme}username_format=%Lu ${file}\n}\n`);
    entries[kind] = (entries[kind] ?? 0) + lines.length;
  }
  // the SQL userdb gives each mailbox its issueWarningQuota rule; Dovecot then checks it on every delivery, so the
  // static variant must too (else it is spared that work): one rule for every user, as a plugin setting
  if (warnings.size > 1) throw new Error(`the static variant needs one quota_warning rule for all users, got ${[...warnings].join(' | ')}`);
  if (warnings.size === 1) text += `plugin {\n  quota_warning = ${[...warnings][0]}\n}\n`;
  out[conf] = text;
  return { passdbEntries: entries.passdb ?? 0, userdbEntries: entries.userdb ?? 0, passdbService: STATIC_SERVICE, droppedFields: [...dropped], quotaWarning: warnings.size === 1 ? { rule: [...warnings][0], users: warned } : null };
}

async function prepareVariants(t: TestPlatform, m: Manifest): Promise<Pick<World, 'files' | 'staticTables' | 'keys'>> {
  const db = t.platform.store.db;
  const sqlFiles: Record<string, string> = {};
  for (const f of [join(m.postfixConfigDir, 'main.cf'), join(m.postfixConfigDir, 'master.cf'), m.dovecotConfig]) sqlFiles[f] = readFileSync(f, 'utf8');
  const staticFiles: Record<string, string> = {};
  const keys = await candidateKeys(db, t.dialect);
  const postfix = staticPostfix(m.postfixConfigDir, keys, staticFiles);
  const dovecot = await staticDovecot(db, m.dovecotConfig, keys, staticFiles);
  const uncached = { ...sqlFiles, [m.dovecotConfig]: sqlFiles[m.dovecotConfig]!.replace(/^auth_cache_size = .*$/m, 'auth_cache_size = 0') };
  return { keys, files: { sql: sqlFiles, static: staticFiles, 'sql-uncached': uncached }, staticTables: { keys: keys.length, postfix, dovecot } };
}

/** Stop (if started), put the variant's configuration in place, empty the mailboxes, start. */
async function switchTo(w: World, v: Variant): Promise<void> {
  if (w.current) await down(w.manifest.dir);
  for (const [f, text] of Object.entries(w.files[v])) writeFileSync(f, text);
  if (existsSync(w.manifest.mailRoot)) for (const e of readdirSync(w.manifest.mailRoot)) rmSync(join(w.manifest.mailRoot, e), { recursive: true, force: true });
  await up(w.manifest.dir);
  w.current = v;
}

// ---------------------------------------------------------------- lookup cost per map

/**
 * What one lookup costs in each map, through Postfix's own client (`postmap -q -`: one process, one
 * connection, keys on stdin), the SQL map against its hash twin, with the candidate keys cycled (hits and
 * misses). Per lookup = (time for n keys − time for one key) / (n − 1), so the process start (and the first,
 * cold lookup) is left out; the best of two runs of n keys, n up to --map-probes, fewer where lookups are
 * slow (about 1 s a run). Resolution: some µs (the process start varies, divided by n).
 */
function mapLookupCost(w: World) {
  const etc = w.manifest.postfixConfigDir;
  const probe = (ref: string, n: number) => {
    const ks = Array.from({ length: n }, (_, i) => w.keys[i % w.keys.length]!);
    const t0 = performance.now();
    // probed without proxy: (Postfix is not running yet; proxymap answers what the table itself does)
    const q = spawnSync('postmap', ['-c', etc, '-q', '-', ref.replace(/\bproxy:/g, '')], { input: `${ks.join('\n')}\n`, stdio: ['pipe', 'ignore', 'pipe'], encoding: 'utf8' });
    if (q.error || (q.status !== 0 && q.status !== 1) || /fatal|error/i.test(q.stderr)) throw new Error(`postmap -q - ${ref}: ${q.error?.message ?? q.stderr}`);
    return performance.now() - t0;
  };
  const perLookupUs = (ref: string) => {
    const one = Math.min(probe(ref, 1), probe(ref, 1), probe(ref, 1));
    // how many keys make about a second: a first guess from 21 keys, refined with 201 where lookups are quick
    const keysFor = (m: number) => Math.max(m, Math.min(MAP_PROBES, Math.ceil(1000 / Math.max(0.001, (probe(ref, m) - one) / (m - 1)))));
    const guess = keysFor(21);
    const n = guess > 201 ? keysFor(201) : guess;
    const all = Math.min(probe(ref, n), probe(ref, n));
    return { n, us: round(Math.max(0, (all - one) / (n - 1)) * 1000, 1) };
  };
  const maps = w.staticTables.postfix.map((p) => {
    const sqlCost = perLookupUs(p.replaced);
    const hashCost = perLookupUs(p.by);
    return { map: basename(tablePath(p.replaced)), sqlUs: sqlCost.us, hashUs: hashCost.us, probes: { sql: sqlCost.n, hash: hashCost.n } };
  });
  progress(`  per-lookup µs (sql/hash): ${maps.map((m) => `${m.map} ${m.sqlUs}/${m.hashUs}`).join(', ')}`);
  return { maps };
}

// ---------------------------------------------------------------- mail throughput

export function delivered(mailboxes: Mailbox[]): number {
  let n = 0;
  for (const mb of mailboxes) {
    for (const sub of ['new', 'cur']) {
      try {
        n += readdirSync(join(mb.home, 'Maildir', sub)).length;
      } catch {
        // not made yet
      }
    }
  }
  return n;
}

/** `count` messages spread evenly over the mailboxes, one smtp-source per mailbox; resolves when all have exited. */
export async function send(smtpPort: number, mailboxes: Mailbox[], count: number, sessions: number): Promise<{ errors: string[] }> {
  const perSource = Math.max(1, Math.round(sessions / mailboxes.length));
  const errors: string[] = [];
  await Promise.all(mailboxes.map((mb, i) => {
    const n = Math.floor(count / mailboxes.length) + (i < count % mailboxes.length ? 1 : 0);
    if (n === 0) return Promise.resolve();
    return new Promise<void>((res) => {
      const child = spawn('/usr/sbin/smtp-source', ['-s', String(Math.min(perSource, n)), '-m', String(n), '-l', String(SIZE), '-f', SENDER, '-t', mb.login, `127.0.0.1:${smtpPort}`], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d) => (err += String(d)));
      // a sender that hangs (Postfix not answering) ends the run with an error instead of the benchmark hanging
      const timer = setTimeout(() => {
        err += ' (killed after 300 s)';
        child.kill('SIGKILL');
      }, 300_000);
      child.once('exit', () => clearTimeout(timer));
      child.once('error', (e) => {
        errors.push(e.message);
        res();
      });
      child.once('exit', (code) => {
        if (code !== 0 || err.trim()) errors.push(`smtp-source ${mb.login} exit ${code}: ${err.trim().slice(0, 300)}`);
        res();
      });
    });
  }));
  return { errors };
}

export function fileSize(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
}

export function readFrom(p: string, offset: number): string {
  const fd = openSync(p, 'r');
  try {
    const len = fileSize(p) - offset;
    if (len <= 0) return '';
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, offset);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** Postfix's own per-message figures from its log: `delay=` of each LMTP delivery (queue arrival → LMTP 250). */
function postfixDeliveries(log: string): { sent: number[]; deferred: number; bounced: number } {
  const sent: number[] = [];
  let deferred = 0;
  let bounced = 0;
  for (const line of log.split('\n')) {
    if (!/\/lmtp\[\d+\]: \w+: to=</.test(line)) continue;
    if (/status=sent/.test(line)) sent.push(Number(/ delay=([\d.]+)/.exec(line)?.[1] ?? NaN) * 1000);
    else if (/status=deferred/.test(line)) deferred++;
    else if (/status=bounced/.test(line)) bounced++;
  }
  return { sent, deferred, bounced };
}

async function mailRun(w: World, smtpPort: number, roundNo: number) {
  const v = w.current!;
  const log = join(w.manifest.logDir, 'postfix.log');
  if (WARMUP > 0) {
    const warmFrom = fileSize(log);
    await send(smtpPort, w.mailboxes, WARMUP, Math.min(SESSIONS, w.mailboxes.length));
    if (!(await until(async () => delivered(w.mailboxes) >= WARMUP, 60_000, 20))) throw new Error(`${v}: warm-up not delivered (${delivered(w.mailboxes)}/${WARMUP}); see ${w.manifest.logDir}`);
    // postlogd writes asynchronously: the warm-up's last lines must not count in the measured run
    await until(async () => postfixDeliveries(readFrom(log, warmFrom)).sent.length >= WARMUP, 5000, 20);
  }
  const base = delivered(w.mailboxes);
  const logFrom = fileSize(log);
  const cpu = cpuByProcess();
  const t0 = performance.now();
  const sent = await send(smtpPort, w.mailboxes, MESSAGES, SESSIONS);
  const acceptMs = performance.now() - t0;
  const complete = await until(async () => delivered(w.mailboxes) - base >= MESSAGES, 300_000, 10);
  const ms = performance.now() - t0;
  const cpuSeconds = cpu.stop();
  const got = delivered(w.mailboxes) - base;
  // postlogd writes asynchronously: wait for the last lines
  await until(async () => postfixDeliveries(readFrom(log, logFrom)).sent.length >= got, 5000, 50);
  const pf = postfixDeliveries(readFrom(log, logFrom));
  const out = {
    variant: v, round: roundNo, messages: MESSAGES, delivered: got, complete,
    seconds: round(ms / 1000, 3), msgsPerSec: rate(got, ms), smtpAcceptSeconds: round(acceptMs / 1000, 3),
    postfixDelayMs: summarize(pf.sent), deferred: pf.deferred, bounced: pf.bounced, senderErrors: sent.errors.slice(0, 5),
    cpuSeconds,
  };
  progress(`  ${v.padEnd(6)} round ${roundNo}: ${got}/${MESSAGES} in ${out.seconds} s = ${out.msgsPerSec} msg/s (SMTP accepted in ${out.smtpAcceptSeconds} s), Postfix delay p50 ${out.postfixDelayMs.p50} p99 ${out.postfixDelayMs.p99} ms${sent.errors.length ? `, ${sent.errors.length} sender errors` : ''}`);
  return out;
}

// ---------------------------------------------------------------- auth lookups

/** A connection speaking Dovecot's tab-separated auth protocols; replies are matched on their id (2nd field). */
class AuthConn {
  private buf = '';
  private readonly waiting = new Map<string, (f: string[]) => void>();
  readonly greeting: string[][] = [];

  private constructor(private readonly sock: Socket) {}

  /** Connect, say `hello`, and collect greeting lines until `done` matches one. */
  static open(path: string, hello: string, done: (f: string[]) => boolean): Promise<AuthConn> {
    return new Promise((res, rej) => {
      const sock = connect({ path });
      const c = new AuthConn(sock);
      let ready = false;
      sock.once('error', rej);
      sock.on('data', (d) => {
        c.buf += String(d);
        let nl: number;
        while ((nl = c.buf.indexOf('\n')) >= 0) {
          const f = c.buf.slice(0, nl).split('\t');
          c.buf = c.buf.slice(nl + 1);
          const w = c.waiting.get(f[1] ?? '');
          if (ready && w) {
            c.waiting.delete(f[1]!);
            w(f);
          } else if (!ready) {
            c.greeting.push(f);
            if (done(f)) {
              ready = true;
              res(c);
            }
          }
        }
      });
      sock.write(hello);
    });
  }

  ask(id: string, line: string): Promise<string[]> {
    return new Promise((res) => {
      this.waiting.set(id, res);
      this.sock.write(`${line}\n`);
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

/** `clients` loops running `op` for AUTH_SECONDS; ops per second and per-op latency. */
async function timedLoops(clients: number, op: (client: number, i: number) => Promise<void>) {
  const lat: number[] = [];
  let failures = 0;
  const failureSamples = new Set<string>();
  const end = performance.now() + AUTH_SECONDS * 1000;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; performance.now() < end; i++) {
      const s = performance.now();
      try {
        await op(c, i);
        lat.push(performance.now() - s);
      } catch (e) {
        failures++;
        if (failureSamples.size < 3) failureSamples.add((e as Error).message.slice(0, 200));
      }
    }
  }));
  const ms = performance.now() - t0;
  return { clients, seconds: round(ms / 1000), lookups: lat.length, failures, ...(failures ? { failureSamples: [...failureSamples] } : {}), perSec: rate(lat.length, ms), latencyMs: summarize(lat) };
}

/**
 * What a login costs the auth service: AUTH PLAIN on auth-login (passdb query + bcrypt verify), then the
 * master's REQUEST for that login on auth-master (userdb query), as a login process and the master do.
 */
async function loginLookups(base: string, mailboxes: Mailbox[]) {
  const conns = await Promise.all(Array.from({ length: AUTH_CLIENTS }, async (_, c) => {
    const cpid = 4_000_000 + c; // an id for this "login process"; only used to match REQUEST to its AUTH
    // auth-login, not auth-client: only a login socket's requests can be picked up by the master's REQUEST
    const client = await AuthConn.open(join(base, 'auth-login'), `VERSION\t1\t2\nCPID\t${cpid}\n`, (f) => f[0] === 'DONE');
    const cookie = client.greeting.find((f) => f[0] === 'COOKIE')?.[1];
    if (!cookie) throw new Error('auth-client handshake without COOKIE');
    const master = await AuthConn.open(join(base, 'auth-master'), 'VERSION\t1\t0\n', (f) => f[0] === 'SPID');
    return { cpid, cookie, client, master };
  }));
  try {
    return await timedLoops(AUTH_CLIENTS, async (c, i) => {
      const k = conns[c]!;
      const mb = mailboxes[(c + i * AUTH_CLIENTS) % mailboxes.length]!;
      const id = String(i + 1);
      const resp = Buffer.from(`\0${mb.login}\0${mb.password}`).toString('base64');
      const a = await k.client.ask(id, `AUTH\t${id}\tPLAIN\tservice=imap\tresp=${resp}`);
      if (a[0] !== 'OK') throw new Error(a.join(' '));
      const u = await k.master.ask(id, `REQUEST\t${id}\t${k.cpid}\t${id}\t${k.cookie}`);
      if (u[0] !== 'USER') throw new Error(u.join(' '));
    });
  } finally {
    for (const k of conns) {
      k.client.close();
      k.master.close();
    }
  }
}

/** userdb only: the auth-master USER request (what LMTP and the quota policy do per recipient). */
async function userdbLookups(base: string, mailboxes: Mailbox[]) {
  const conns = await Promise.all(Array.from({ length: AUTH_CLIENTS }, () => AuthConn.open(join(base, 'auth-master'), 'VERSION\t1\t0\n', (f) => f[0] === 'SPID')));
  try {
    return await timedLoops(AUTH_CLIENTS, async (c, i) => {
      const mb = mailboxes[(c + i * AUTH_CLIENTS) % mailboxes.length]!;
      const id = String(i + 1);
      const u = await conns[c]!.ask(id, `USER\t${id}\t${mb.login}\tservice=lmtp`);
      if (u[0] !== 'USER') throw new Error(u.join(' '));
    });
  } finally {
    for (const c of conns) c.close();
  }
}

/** One IMAP LOGIN + LOGOUT on a fresh connection (raw socket): login process, auth and the imap process. */
function imapLogin(port: number, user: string, pass: string): Promise<void> {
  return new Promise((res, rej) => {
    const s = connect({ host: '127.0.0.1', port });
    let buf = '';
    let step = 0;
    s.setTimeout(10_000, () => s.destroy(new Error('IMAP timeout')));
    s.once('error', rej);
    s.once('close', () => (step === 3 ? res() : rej(new Error(`IMAP closed at step ${step}: ${buf.slice(0, 200)}`))));
    s.on('data', (d) => {
      buf += String(d);
      if (step === 0 && buf.includes('\r\n')) {
        step = 1;
        buf = '';
        s.write(`a LOGIN "${user}" "${pass}"\r\n`);
      } else if (step === 1 && /^a (OK|NO|BAD)/m.test(buf)) {
        if (!/^a OK/m.test(buf)) return s.destroy(new Error(buf.trim()));
        step = 2;
        buf = '';
        s.write('b LOGOUT\r\n');
      } else if (step === 2 && /^b OK/m.test(buf)) {
        step = 3;
        s.end();
      }
    });
  });
}

async function authBench(w: World) {
  const base = join(w.manifest.dir, 'dovecot', 'run');
  const login = await loginLookups(base, w.mailboxes);
  const userdb = await userdbLookups(base, w.mailboxes);
  const imap = await timedLoops(AUTH_CLIENTS, (c, i) => {
    const mb = w.mailboxes[(c + i * AUTH_CLIENTS) % w.mailboxes.length]!;
    return imapLogin(w.manifest.ports.imap, mb.login, mb.password);
  });
  progress(`  auth (${w.current}): login (passdb+userdb) ${login.perSec}/s p99 ${login.latencyMs.p99} ms, userdb ${userdb.perSec}/s p99 ${userdb.latencyMs.p99} ms, IMAP LOGIN ${imap.perSec}/s p99 ${imap.latencyMs.p99} ms`);
  return { passdbAndUserdb: login, userdbOnly: userdb, imapLogins: imap };
}

// ---------------------------------------------------------------- one database

function totals(runs: Array<{ variant: Variant; delivered: number; seconds: number; cpuSeconds: Record<string, number> }>, v: Variant) {
  const mine = runs.filter((r) => r.variant === v);
  const n = mine.reduce((a, r) => a + r.delivered, 0);
  const s = mine.reduce((a, r) => a + r.seconds, 0);
  const cpu = mine.reduce((a, r) => a + Object.values(r.cpuSeconds).reduce((x, y) => x + y, 0), 0);
  return { runs: mine.length, delivered: n, seconds: round(s, 3), msgsPerSec: rate(n, s * 1000), cpuMsPerMessage: round((cpu * 1000) / Math.max(1, n), 2) };
}

async function benchDatabase(dialect: Dialect) {
  const t = await startTestPlatform(dialect);
  // outside the platform's data dir: the postfix user and the mail uid must be able to pass through
  const work = mkdtempSync('/tmp/hmc-dpb-');
  chmodSync(work, 0o755);
  let w: World | undefined;
  try {
    progress(`[${dialect}] provisioning ${MAILBOXES} users and mailboxes through the API (bcrypt cost ${BCRYPT_COST})`);
    const { mailboxes, smtpPort } = await provision(t, work, 'dp-bench');
    const database = t.tdb.url ? { url: t.tdb.url } : { sqlitePath: t.tdb.sqlitePath! };
    const manifest = await renderDataplane(t.platform.store.db, 'dp-bench', { outDir: join(work, 'dp'), database, smtpPort, plaintextAuth: true });
    w = { manifest, mailboxes, current: null, ...(await prepareVariants(t, manifest)) };
    progress(`  static variant: ${w.staticTables.postfix.map((p) => `${basename(p.by)} (${p.entries})`).join(', ')}; passwd-files (passdb ${w.staticTables.dovecot.passdbEntries}, userdb ${w.staticTables.dovecot.userdbEntries} names)`);
    const out: Record<string, unknown> = {};
    if (ONLY.has('maps')) out.mapLookups = mapLookupCost(w);
    if (ONLY.has('throughput')) {
      const runs = [];
      for (let r = 0; r < ROUNDS; r++) {
        for (const v of (r % 2 === 0 ? ['sql', 'static'] : ['static', 'sql']) as Variant[]) {
          await switchTo(w, v);
          runs.push(await mailRun(w, smtpPort, r + 1));
        }
      }
      const sqlT = totals(runs, 'sql');
      const staticT = totals(runs, 'static');
      const ratio = round(sqlT.msgsPerSec / staticT.msgsPerSec, 3);
      progress(`  throughput ratio sql/static = ${ratio} (sql ${sqlT.msgsPerSec} msg/s, static ${staticT.msgsPerSec} msg/s)`);
      // the machine's CPU per delivered message, static over sql: what the SQL lookups cost, less sensitive than
      // msgs/s to this machine's swings (a run of either variant can be 40% slower than the next)
      const cpuRatio = round(staticT.cpuMsPerMessage / sqlT.cpuMsPerMessage, 3);
      progress(`  CPU per message: sql ${sqlT.cpuMsPerMessage} ms, static ${staticT.cpuMsPerMessage} ms (static/sql ${cpuRatio})`);
      out.throughput = { ratio, target: 0.9, met: ratio >= 0.9, cpuRatio, sql: sqlT, static: staticT, runs };
    }
    if (ONLY.has('auth')) {
      // on whichever variant is up (SQL first when none is), then the others: the SQL lookups without the auth
      // cache (every lookup a query) and the static tables, for reference
      const auth: Record<string, unknown> = {};
      const world = w;
      if (!world.current) await switchTo(world, 'sql');
      const order: Variant[] = [world.current!, ...(['sql', 'sql-uncached', 'static'] as Variant[]).filter((v) => v !== world.current)];
      for (const v of order) {
        if (world.current !== v) await switchTo(world, v);
        auth[v] = await authBench(world);
      }
      const cache = /^auth_cache_size = (\S+)$/m.exec(w.files.sql[w.manifest.dovecotConfig]!)?.[1] ?? '0';
      const ttl = /^auth_cache_ttl = (.+)$/m.exec(w.files.sql[w.manifest.dovecotConfig]!)?.[1] ?? '';
      out.auth = {
        bcryptCost: BCRYPT_COST, authCache: cache === '0' ? 'off as rendered' : `as rendered: auth_cache_size = ${cache}, auth_cache_ttl = ${ttl}`,
        sql: auth.sql, sqlUncached: auth['sql-uncached'], static: auth.static,
      };
    }
    out.staticVariant = w.staticTables;
    return out;
  } finally {
    try {
      if (w?.current) await down(w.manifest.dir);
    } finally {
      await t.close();
      rmSync(work, { recursive: true, force: true });
    }
  }
}

export async function runDataplaneBench(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the dataplane suite must run as root (Postfix and Dovecot masters start as root)');
  const dbs: Dialect[] = opt.db === 'both' ? ['sqlite', 'postgres'] : [opt.db as Dialect];
  const result: Record<string, unknown> = {
    suite: 'dataplane', at: new Date().toISOString(), machine: machineInfo(),
    options: { messages: MESSAGES, mailboxes: MAILBOXES, sessions: SESSIONS, size: SIZE, warmup: WARMUP, rounds: ROUNDS, bcryptCost: BCRYPT_COST, authClients: AUTH_CLIENTS, authSeconds: AUTH_SECONDS },
    databases: {},
  };
  for (const d of dbs) (result.databases as any)[d] = await benchDatabase(d);
  (result as any).machineAfter = { loadAverage: (machineInfo() as any).loadAverage };
  const json = JSON.stringify(result, null, 2);
  mkdirSync(resolve('.bench'), { recursive: true });
  writeFileSync(resolve('.bench/dataplane-last.json'), json);
  process.stdout.write(`${json}\n`);
}
