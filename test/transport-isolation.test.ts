import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { DIALECTS } from '../src/store/testing.js';
import type { TransportAgent } from '../src/transport/agent.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg, type MailOrg } from './mail-support.js';
import { dataplaneSkip, freePorts, sleep, startDataplane, startSink, workDir, type RunningDataplane } from './dataplane-support.js';
import { prng } from './prng.js';
import { World, type Audience, type ModelGroup, type ModelMailbox, type ModelOrg, type ReplyKind } from './isolation-model.js';

/**
 * Tenant isolation in the mail path (issue 6 acceptance, "Isolation property test"): 20 organizations on one
 * data plane — real Postfix, Dovecot and the transport agent — whose mailboxes, display names, aliases and group
 * names all collide (every organization has alice, bob, carol, dave, info, an `al@` alias, groups `sales` and
 * `all`), with domain aliases, forwarding inside the organization (with and without a copy, chained, to a
 * group), forwarding to another organization and outside the platform (plans that allow it), groups with
 * contacts of another tenant, nested groups, and auto-replies with per-organization texts. 2,000 random
 * messages (authenticated submission, MX from outside, MX forging a tenant's address) to 1-3 random recipients
 * of any spelling; then every mailbox must hold exactly the messages the test's own model (isolation-model.ts)
 * routes to it, each once, the sink exactly the outside copies, and every auto-reply must be one the model owes: the
 * internal text only ever to an authenticated sender of the mailbox's own organization, one reply per sender
 * and mailbox. Seeded: a failure prints its seed, HMC_ISOLATION_SEED=<seed> replays it.
 */

const ORGS = 20;
const SENDS = 2000;
const CONCURRENCY = 8;
const SEED = Number(process.env.HMC_ISOLATION_SEED ?? Math.floor(Math.random() * 2 ** 31));
const DRAIN_TIMEOUT_MS = 10 * 60_000;

const USERS = [
  { local: 'alice', name: 'Alice Smith' },
  { local: 'bob', name: 'Bob Jones' },
  { local: 'carol', name: 'Carol White' },
  { local: 'dave', name: 'Dave Brown' },
] as const;
/** Mailbox local part → the external audience of its auto-reply (organizations with odd index have them). */
const AUDIENCE: Record<string, Audience> = { alice: 'all', bob: 'known', carol: 'none', dave: 'all', info: 'known' };
const EXTERNAL_SENDERS = ['partner@remote.example', 'stranger@remote.example', 'someone@elsewhere.example', 'dave.home@remote.example'];
const EXTERNAL_RECIPIENTS = ['partner@remote.example', 'friend@remote.example', 'alice@elsewhere.example'];

const pad = (i: number) => String(i).padStart(2, '0');
const domainOf = (i: number) => `iso${pad(i)}.example`;
const internalText = (o: number, local: string) => `INTERNAL org${pad(o)} ${local}: back on Monday, ask a colleague`;
const externalText = (o: number, local: string) => `EXTERNAL org${pad(o)} ${local}: out of the office`;
/** Organizations whose mailbox plan allows forwarding outside the organization. */
const externalForwarding = (i: number) => i % 4 === 3;
const hasAliasDomain = (i: number) => i % 4 === 0;
const hasAutoReplies = (i: number) => i % 2 === 1;

type SendKind = 'submission' | 'mx-external' | 'mx-forged';

interface Send {
  tag: string;
  kind: SendKind;
  from: string;
  login: { user: string; pass: string } | null;
  to: string[];
}

/** One message as it was found (a mailbox's maildir file or a sink copy). */
interface Found {
  subject: string;
  from: string;
  to: string;
  body: string;
}

function parseMessage(raw: string): Found {
  const end = raw.search(/\r?\n\r?\n/);
  const head = (end < 0 ? raw : raw.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  const header = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(head)?.[1]?.trim() ?? '';
  const address = (v: string) => (/<([^>]*)>/.exec(v)?.[1] ?? v).trim().toLowerCase();
  return { subject: header('Subject'), from: address(header('From')), to: address(header('To')), body: end < 0 ? '' : raw.slice(end).replace(/=\r?\n/g, '') };
}

/** Files in the Postfix queue (incoming, active, deferred, hold, maildrop): 0 once everything was delivered. */
function queued(dpDir: string): Record<string, number> {
  const count = (d: string): number => (existsSync(d) ? readdirSync(d, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? count(join(d, e.name)) : 1), 0) : 0);
  const out: Record<string, number> = {};
  for (const q of ['maildrop', 'incoming', 'active', 'deferred', 'hold']) out[q] = count(join(dpDir, 'postfix', 'spool', q));
  return out;
}

/** One SMTP transaction; every recipient must be accepted. */
async function smtp(port: number, s: Send, raw: string): Promise<void> {
  const c = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, name: 'client.test', connectionTimeout: 30_000, socketTimeout: 120_000 });
  await new Promise<void>((res, rej) => {
    c.once('error', rej);
    c.connect(() => res());
  });
  try {
    if (s.login) await new Promise<void>((res, rej) => c.login(s.login!, (e) => (e ? rej(e) : res())));
    const info = await new Promise<SMTPConnection.SentMessageInfo>((res, rej) => c.send({ from: s.from, to: s.to }, raw, (e, i) => (e ? rej(e) : res(i))));
    if (info.rejected.length > 0) throw new Error(`rejected ${JSON.stringify(info.rejected)}: ${JSON.stringify(info.rejectedErrors?.map((e) => e.message))}`);
  } finally {
    c.quit();
  }
}

for (const dialect of DIALECTS) {
  describe(`tenant isolation in the mail path: ${ORGS} organizations, ${SENDS} random messages (${dialect})`, { skip: dataplaneSkip }, () => {
    let t: TestPlatform;
    let work: ReturnType<typeof workDir>;
    let sink: Awaited<ReturnType<typeof startSink>>;
    let dp: RunningDataplane | undefined;
    let agent: TransportAgent;
    let ports: { smtp: number; submission: number };
    let storeId: string;
    const world = new World();
    const orgs: MailOrg[] = [];
    const timings: Record<string, number> = {};

    /** Phase 1: the organization, its plan, domain alias and mailboxes (all organizations exist before anything points across them). */
    async function buildOrg(i: number): Promise<void> {
      const D = domainOf(i);
      const o = await setupMailOrg(t, `iso${pad(i)}`, { defaultStores: false, ...(externalForwarding(i) ? { mailboxPlan: { externalForwarding: true } } : {}) });
      assert.equal(o.domainName, D);
      orgs[i] = o;
      let aliasDomain: string | null = null;
      if (hasAliasDomain(i)) {
        aliasDomain = `alias-${D}`;
        const d = await t.ok('POST', `${o.orgUrl}/domains`, { name: aliasDomain }, o.orgAdmin);
        await t.ok('PUT', `${o.orgUrl}/domains/${d.id}/accepted?wait=true`, { aliasOf: o.domainId }, o.orgAdmin);
      }
      const model: ModelOrg = { index: i, domain: D, aliasDomain, externalForwarding: externalForwarding(i), mailboxes: [], groups: [], contacts: [] };
      for (const u of USERS) {
        const login = `${u.local}@${D}`;
        const password = `pw-${u.local}-${pad(i)}-${SEED}`;
        // the al@ alias belongs to alice in even organizations, to bob in odd ones
        const aliases = (u.local === 'alice' && i % 2 === 0) || (u.local === 'bob' && i % 2 === 1) ? [`al@${D}`] : [];
        const user = await t.ok('POST', `${o.orgUrl}/users?wait=true`, { login, password });
        const m = await t.ok('POST', `${o.orgUrl}/mailboxes?wait=true`, { kind: 'user', userId: user.id, planId: o.mailboxPlanId, displayName: u.name, aliases });
        model.mailboxes.push({ id: m.id, org: i, local: u.local, primary: login, aliases, displayName: u.name, login, password, forwarding: null, reply: null });
      }
      const info = await t.ok('POST', `${o.orgUrl}/mailboxes?wait=true`, { kind: 'shared', primaryAddress: `info@${D}`, planId: o.mailboxPlanId, displayName: 'Info Desk', aliases: [`contact@${D}`] }, o.orgAdmin);
      model.mailboxes.push({ id: info.id, org: i, local: 'info', primary: `info@${D}`, aliases: [`contact@${D}`], displayName: 'Info Desk', login: null, password: null, forwarding: null, reply: null });
      world.addOrg(model);
    }

    /** Phase 2: contacts, groups, forwarding and auto-replies, some of which name other organizations. */
    async function wireOrg(i: number): Promise<void> {
      const o = orgs[i]!;
      const model = world.orgs[i]!;
      const D = model.domain;
      const next = domainOf((i + 1) % ORGS);
      const mbx = (local: string) => model.mailboxes.find((m) => m.local === local)!;
      // the same outside partner in every organization, and a colleague of the next organization (display name collides too)
      const partner = await t.ok('POST', `${o.orgUrl}/contacts?wait=true`, { displayName: 'Partner', externalAddress: 'partner@remote.example' }, o.orgAdmin);
      const neighbour = await t.ok('POST', `${o.orgUrl}/contacts?wait=true`, { displayName: 'Bob Jones', externalAddress: `bob@${next}` }, o.orgAdmin);
      model.contacts.push('partner@remote.example', `bob@${next}`);

      const group = async (name: string, displayName: string): Promise<{ id: string; model: ModelGroup }> => {
        const g = await t.ok('POST', `${o.orgUrl}/groups`, { name, displayName }, o.orgAdmin);
        // who may send: anyone, so outside senders reach the group whatever the policy service enforces
        await t.ok('PUT', `${o.orgUrl}/groups/${g.id}/mail?wait=true`, { primaryAddress: `${name}@${D}`, sendPolicy: 'anyone' }, o.orgAdmin);
        const m: ModelGroup = { org: i, name, primary: `${name}@${D}`, members: [] };
        model.groups.push(m);
        return { id: g.id, model: m };
      };
      const member = (groupId: string, memberId: string) => t.ok('POST', `${o.orgUrl}/groups/${groupId}/mail-members?wait=true`, { memberId }, o.orgAdmin);
      const sales = await group('sales', 'Sales');
      for (const m of [mbx('alice'), mbx('bob')]) {
        await member(sales.id, m.id);
        sales.model.members.push({ mailbox: m });
      }
      if (i % 5 === 0) {
        await member(sales.id, partner.id);
        sales.model.members.push({ contact: 'partner@remote.example' });
      } else if (i % 5 === 1) {
        await member(sales.id, neighbour.id);
        sales.model.members.push({ contact: `bob@${next}` });
      }
      const all = await group('all', 'Everyone');
      await member(all.id, sales.id);
      all.model.members.push({ group: sales.model });
      for (const local of ['carol', 'dave', 'info']) {
        await member(all.id, mbx(local).id);
        all.model.members.push({ mailbox: mbx(local) });
      }

      const forward = async (m: ModelMailbox, to: string, mode: 'forward_only' | 'deliver_and_forward') => {
        await t.ok('PATCH', `${o.orgUrl}/mailboxes/${m.id}?wait=true`, { forwarding: { to, mode } }, o.orgAdmin);
        m.forwarding = { to, mode };
      };
      // dave: to a colleague without / with a copy; outside the platform; in 19 a chain dave → carol → another tenant
      if (i % 4 === 0) await forward(mbx('dave'), `carol@${D}`, 'forward_only');
      else if (i % 4 === 1) await forward(mbx('dave'), `carol@${D}`, 'deliver_and_forward');
      else if (i === 19) await forward(mbx('dave'), `carol@${D}`, 'forward_only');
      else if (i % 4 === 3) await forward(mbx('dave'), 'dave.home@remote.example', 'forward_only');
      // carol, where the plan allows it: to another organization's mailbox, group, or domain-alias spelling
      if (i === 3 || i === 11 || i === 19) await forward(mbx('carol'), `bob@${next}`, 'deliver_and_forward');
      else if (i === 7) await forward(mbx('carol'), `sales@${next}`, 'forward_only');
      else if (i === 15) await forward(mbx('carol'), `carol@alias-${next}`, 'deliver_and_forward');
      // info (shared): to a colleague, or a copy to its own group
      if (i % 3 === 0) await forward(mbx('info'), `alice@${D}`, 'forward_only');
      else if (i % 3 === 1) await forward(mbx('info'), `sales@${D}`, 'deliver_and_forward');

      if (hasAutoReplies(i)) {
        for (const m of model.mailboxes) {
          m.reply = { internal: internalText(i, m.local), external: externalText(i, m.local), audience: AUDIENCE[m.local]! };
          await t.ok('PUT', `${o.orgUrl}/mailboxes/${m.id}/auto-reply`, { mode: 'on', internalMessage: m.reply.internal, externalMessage: m.reply.external, externalAudience: m.reply.audience }, o.orgAdmin);
        }
      }
    }

    /** `n` tasks, at most `width` at once. */
    async function pool(n: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
      let next = 0;
      await Promise.all(Array.from({ length: Math.min(width, n) }, async () => {
        while (next < n) await task(next++);
      }));
    }

    before(async () => {
      const t0 = Date.now();
      work = workDir();
      const [smtpPort, submission, lmtp, imap, agentMx, agentSub, reinject, reply, agentDeliver] = (await freePorts(9)) as [number, number, number, number, number, number, number, number, number];
      ports = { smtp: smtpPort, submission };
      t = await startTestPlatform(dialect, { config: { port: 0, dataplaneRoot: work.path, transportSecret: `isolation-secret-${SEED}-0123456789abcdef` } });
      sink = await startSink();
      const srv = await t.ok('POST', '/api/v1/mail-servers', { name: 'dp-iso', lmtpEndpoint: `127.0.0.1:${lmtp}`, imapEndpoint: `127.0.0.1:${imap}`, mailRoot: join(work.path, 'mail') });
      storeId = (await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'dp-iso-store', capacityBytes: 2 ** 50 })).id;
      await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'dp-iso-public', purpose: 'public_folder', capacityBytes: 2 ** 50 });
      await pool(ORGS, 4, buildOrg);
      world.index();
      await pool(ORGS, 4, wireOrg);
      world.index();
      timings.setupApiMs = Date.now() - t0;
      dp = await startDataplane(t, 'dp-iso', join(work.path, 'dp-iso'), [
        '--smtp-port', String(smtpPort), '--submission-port', String(submission), '--relayhost', `[127.0.0.1]:${sink.port}`,
        '--agent-port', String(agentMx), '--agent-submission-port', String(agentSub), '--agent-deliver-port', String(agentDeliver), '--reinject-port', String(reinject), '--reply-port', String(reply),
      ], {
        // A delivery deferred once (Dovecot's LMTP slow to greet under this load: seen about once in a few runs)
        // waited for Postfix's next queue scan, 5-10 minutes later: the drain took 483-497 s of its 10-minute
        // limit. Deferred mail is retried after seconds here; what this test checks is where every message lands.
        postfix: { queue_run_delay: '5s', minimal_backoff_time: '5s', maximal_backoff_time: '30s' },
      });
      [agent] = await t.platform.startTransport([dp.manifest]) as [TransportAgent];
      timings.setupMs = Date.now() - t0;
    });
    after(async () => {
      try {
        await dp?.stop();
      } finally {
        await sink?.close();
        await t?.close();
        work?.remove();
      }
    });

    /** The random messages: who sends how, to which spellings of which recipients. */
    function generate(): Send[] {
      const rnd = prng(SEED);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
      const users = world.mailboxes().filter((m) => m.login);
      const respell = (address: string) => {
        // a few in other letter cases: Postfix and Dovecot must fold them the same way
        const [local, domain] = address.split('@') as [string, string];
        return rnd() < 0.05 ? `${local[0]!.toUpperCase()}${local.slice(1)}@${domain.toUpperCase()}` : address;
      };
      // `home`: the sender's organization when it is one (mail among colleagues is most of a tenant's mail), else any
      const recipient = (allowExternal: boolean, home: number | null): string => {
        const o = home !== null && rnd() < 0.5 ? world.orgs[home]! : pick(world.orgs);
        const direct = () => pick(o.mailboxes).primary;
        const r = rnd();
        if (r < 0.35) return direct();
        if (r < 0.45) return pick(o.mailboxes.flatMap((m) => m.aliases));
        if (r < 0.55) {
          if (!o.aliasDomain) return direct();
          const local = pick([...o.mailboxes.flatMap((m) => [m.primary, ...m.aliases]), ...o.groups.map((g) => g.primary)]).split('@')[0];
          return `${local}@${o.aliasDomain}`;
        }
        if (r < 0.75) return pick(o.groups).primary;
        if (r < 0.9) {
          const fwd = o.mailboxes.filter((m) => m.forwarding);
          if (fwd.length === 0) return direct();
          const m = pick(fwd);
          return pick([m.primary, ...m.aliases]);
        }
        return allowExternal ? pick(EXTERNAL_RECIPIENTS) : direct();
      };
      const sends: Send[] = [];
      for (let n = 0; n < SENDS; n++) {
        const r = rnd();
        const kind: SendKind = r < 0.45 ? 'submission' : r < 0.8 ? 'mx-external' : 'mx-forged';
        let from: string;
        let login: Send['login'] = null;
        if (kind === 'submission') {
          const m = pick(users);
          login = { user: m.login!, pass: m.password! };
          const o = world.orgs[m.org]!;
          const s = rnd();
          // its primary address, else one of its own other spellings (Postfix's sender login map admits them)
          from = s < 0.7 || (s < 0.85 && m.aliases.length === 0) || (s >= 0.85 && !o.aliasDomain) ? m.primary
            : s < 0.85 ? pick(m.aliases) : `${m.local}@${o.aliasDomain}`;
        } else if (kind === 'mx-external') {
          from = pick(EXTERNAL_SENDERS);
        } else {
          from = pick(users).primary;
        }
        const to: string[] = [];
        const count = 1 + Math.floor(rnd() * 3);
        while (to.length < count) {
          const a = respell(recipient(kind === 'submission', kind === 'mx-external' ? null : world.orgOfAddress(from)));
          if (!to.some((x) => x.toLowerCase() === a.toLowerCase())) to.push(a);
        }
        sends.push({ tag: `t${String(n).padStart(4, '0')}s${SEED.toString(36)}`, kind, from, login, to });
      }
      return sends;
    }

    function raw(s: Send): string {
      const named = (a: string) => {
        const m = world.mailboxOf(a);
        return m ? `"${m.displayName}" <${a}>` : `<${a}>`;
      };
      return [
        `From: ${named(s.from)}`, `To: ${s.to.map(named).join(', ')}`, `Subject: iso ${s.tag}`,
        `Message-ID: <${s.tag}@client.test>`, `Date: ${new Date().toUTCString()}`, '', `isolation ${s.tag} (${s.kind})`, '',
      ].join('\r\n');
    }

    test('every message lands in exactly the intended mailboxes; auto-replies never carry internal text across a tenant', async (tc) => {
      const sends = generate();
      const byTag = new Map(sends.map((s) => [s.tag, s]));
      const mailboxById = new Map(world.mailboxes().map((m) => [m.id, m]));
      const mailboxByPrimary = new Map(world.mailboxes().map((m) => [m.primary, m]));
      const label = (m: ModelMailbox) => m.primary;
      const problems: string[] = [];
      const fail = (p: string) => problems.push(p);

      // ---- send ----
      const t0 = Date.now();
      const errors: string[] = [];
      const retried: string[] = [];
      await pool(sends.length, CONCURRENCY, async (n) => {
        const s = sends[n]!;
        // a temporary refusal of the whole transaction (4xx, nothing accepted) is retried, as any SMTP client does;
        // a partial or permanent refusal is an error
        for (let attempt = 1; ; attempt++) {
          try {
            await smtp(s.kind === 'submission' ? ports.submission : ports.smtp, s, raw(s));
            break;
          } catch (e) {
            const msg = (e as Error).message;
            if (attempt < 6 && /^(Message failed|Can't send mail - all recipients were rejected|Invalid login): 4\d\d /.test(msg)) {
              retried.push(`${s.tag}: ${msg}`);
              await sleep(500 * attempt);
              continue;
            }
            errors.push(`${s.tag} ${s.kind} from ${s.from} to ${s.to.join(',')}: ${msg}`);
            break;
          }
        }
      });
      timings.sendMs = Date.now() - t0;
      if (retried.length > 0) tc.diagnostic(`${retried.length} temporary refusals retried, e.g. ${retried[0]}`);
      assert.deepEqual(errors.slice(0, 10), [], `seed ${SEED}: ${errors.length} sends failed`);

      // ---- wait until Postfix's queue is empty, the agent idle and no auto-reply under way, twice running ----
      const t1 = Date.now();
      let quiet = 0;
      let last: Record<string, number> = {};
      while (quiet < 2) {
        if (Date.now() - t1 > DRAIN_TIMEOUT_MS) assert.fail(`seed ${SEED}: the queue did not drain within ${DRAIN_TIMEOUT_MS} ms: ${JSON.stringify(last)}, agent ${JSON.stringify(agent.status())}; logs in ${dp!.dir}/log`);
        await agent.settled();
        last = queued(dp!.dir);
        const idle = Object.values(last).every((v) => v === 0) && agent.status().inFlight === 0;
        quiet = idle ? quiet + 1 : 0;
        await sleep(idle ? 300 : 1000);
      }
      timings.drainMs = Date.now() - t1;

      // ---- what arrived: every maildir file and every sink copy ----
      // original: tag → where (mailbox primary or ext:address) → copies; replies: "<mailbox>|<tag>" → its copies
      const originals = new Map<string, Map<string, number>>();
      const replies = new Map<string, { to: string; bodies: string[]; where: Map<string, number> }>();
      let files = 0;
      const note = (where: string, f: Found) => {
        const o = /^iso (\S+)$/.exec(f.subject);
        const r = /^Automatic reply: iso (\S+)$/.exec(f.subject);
        if (o && byTag.has(o[1]!)) {
          const m = originals.get(o[1]!) ?? new Map<string, number>();
          m.set(where, (m.get(where) ?? 0) + 1);
          originals.set(o[1]!, m);
        } else if (r && byTag.has(r[1]!)) {
          const key = `${f.from}|${r[1]}`;
          const e = replies.get(key) ?? { to: f.to, bodies: [], where: new Map<string, number>() };
          e.bodies.push(f.body);
          e.where.set(where, (e.where.get(where) ?? 0) + 1);
          replies.set(key, e);
        } else fail(`unexpected message in ${where}: subject "${f.subject}" from ${f.from}`);
      };
      for (const m of world.mailboxes()) {
        const maildir = join(work.path, 'mail', storeId, orgs[m.org]!.org.id, m.id, 'Maildir');
        for (const sub of ['new', 'cur']) {
          const d = join(maildir, sub);
          if (!existsSync(d)) continue;
          for (const f of readdirSync(d)) {
            files++;
            note(label(m), parseMessage(readFileSync(join(d, f), 'utf8')));
          }
        }
      }
      for (const s of sink.messages) for (const to of s.to) note(`ext:${to.toLowerCase()}`, parseMessage(s.raw));

      // ---- originals: exactly the model's mailboxes and outside addresses ----
      const routeOf = (recipients: string[]) => {
        const r = world.route(recipients);
        const where = new Set([...new Set(r.final.values())].map(label));
        for (const e of r.external) where.add(`ext:${e}`);
        return { routed: r, where };
      };
      let expectedCopies = 0;
      let duplicates = 0;
      const duplicateExamples: string[] = [];
      let crossTenant = 0;
      for (const s of sends) {
        const { routed, where } = routeOf(s.to);
        expectedCopies += where.size;
        const got = originals.get(s.tag) ?? new Map<string, number>();
        const missing = [...where].filter((w) => !got.has(w));
        const extra = [...got.keys()].filter((w) => !where.has(w));
        if (missing.length || extra.length) {
          fail(`${s.tag} (${s.kind} from ${s.from} to ${s.to.join(', ')}): expected ${JSON.stringify([...where].sort())}, got ${JSON.stringify([...got.keys()].sort())}`);
        }
        for (const [w, n] of got) {
          if (n <= 1 || !where.has(w)) continue;
          duplicates += n - 1;
          const spellings = [...routed.final].filter(([, m]) => label(m) === w).map(([a]) => a);
          if (duplicateExamples.length < 5) duplicateExamples.push(`${s.tag} to ${s.to.join(', ')}: ${n} copies in ${w}, reached as ${spellings.join(', ')}`);
          // one copy per mailbox: secondary addresses rewrite to the primary and Postfix drops duplicate recipients
          // by final address (dataplane migration 0023, enable_original_recipient = no)
          fail(`${s.tag} (${s.kind} to ${s.to.join(', ')}): ${n} copies in ${w}, reached as ${spellings.join(', ')}`);
        }
        const senderOrg = world.orgOfAddress(s.from);
        if ([...routed.final.values()].some((m) => m.org !== senderOrg)) crossTenant++;
      }

      // ---- auto-replies: the model's kind and text, landing where the sender's address routes, once per sender and mailbox ----
      const owed = new Map<string, Map<string, ReplyKind>>(); // "<mailbox id>|<sender>" → tag → kind
      for (const s of sends) {
        const auth = s.kind === 'submission';
        for (const m of new Set(world.route(s.to).final.values())) {
          const kind = world.replyFor(m, s.from, auth);
          if (!kind) continue;
          const key = `${m.id}|${s.from.toLowerCase()}`;
          const tags = owed.get(key) ?? new Map<string, ReplyKind>();
          tags.set(s.tag, kind);
          owed.set(key, tags);
        }
      }
      const answered = new Map<string, string[]>(); // "<mailbox id>|<sender>" → tags answered
      let internalReplies = 0;
      let externalReplies = 0;
      let internalOutsideTenant = 0;
      let internalPastForwarding = 0; // internal replies to a sender whose address forwards (elsewhere or also)
      for (const [key, r] of replies) {
        const [primary, tag] = key.split('|') as [string, string];
        const m = mailboxByPrimary.get(primary);
        const s = byTag.get(tag)!;
        if (!m) {
          fail(`a reply to ${tag} from ${primary}, which is no mailbox`);
          continue;
        }
        const pair = `${m.id}|${s.from.toLowerCase()}`;
        answered.set(pair, [...(answered.get(pair) ?? []), tag]);
        const kind = owed.get(pair)?.get(tag);
        const markers = [...new Set(r.bodies.flatMap((b) => [...b.matchAll(/(INTERNAL|EXTERNAL) org(\d\d) (\w+)/g)].map((x) => x[0])))];
        const internalOrgs = [...new Set(r.bodies.flatMap((b) => [...b.matchAll(/INTERNAL org(\d\d)/g)].map((x) => Number(x[1]))))];
        // the safety property on its own: internal text only for an authenticated sender of that organization
        for (const o of internalOrgs) {
          if (s.kind !== 'submission' || world.orgOfAddress(s.from) !== o) fail(`INTERNAL text of org${pad(o)} in a reply to ${tag} (${s.kind} from ${s.from})`);
        }
        const want = kind === 'internal' ? internalText(m.org, m.local) : kind === 'external' ? externalText(m.org, m.local) : null;
        if (!want) {
          fail(`${m.primary} replied to ${tag} (${s.kind} from ${s.from}) though it owes no reply (markers ${JSON.stringify(markers)})`);
          continue;
        }
        if (markers.length !== 1 || !want.startsWith(markers[0]!)) fail(`${m.primary}'s reply to ${tag} (${s.kind} from ${s.from}): expected ${kind} text, found ${JSON.stringify(markers)}`);
        if (r.to !== s.from.toLowerCase()) fail(`${m.primary}'s reply to ${tag} is addressed to ${r.to}, not the sender ${s.from}`);
        // an external reply lands where the sender's address leads (forwarding included); an internal one only in
        // the sender's own mailbox, past its forwarding: internal text never leaves the organization
        const where = kind === 'internal' ? new Set([label(world.mailboxOf(s.from)!)]) : routeOf([s.from]).where;
        const got = [...r.where.keys()];
        if (got.length !== where.size || got.some((w) => !where.has(w)) || [...r.where.values()].some((n) => n !== 1)) {
          fail(`${m.primary}'s reply to ${tag} (sender ${s.from}): expected in ${JSON.stringify([...where].sort())}, found ${JSON.stringify(Object.fromEntries(r.where))}`);
        }
        if (kind === 'internal') {
          internalReplies++;
          if (got.some((w) => !w.startsWith('ext:') ? mailboxByPrimary.get(w)!.org !== m.org : true)) {
            internalOutsideTenant++;
            fail(`${m.primary}'s internal reply to ${tag} left the organization: found in ${JSON.stringify([...got].sort())}`);
          }
          if (routeOf([s.from]).where.size !== 1 || !routeOf([s.from]).where.has(label(world.mailboxOf(s.from)!))) internalPastForwarding++;
        } else externalReplies++;
      }
      for (const [pair, tags] of owed) {
        const n = answered.get(pair)?.length ?? 0;
        if (n !== 1) {
          const [id, sender] = pair.split('|') as [string, string];
          fail(`${mailboxById.get(id)!.primary} owes ${sender} one reply (messages ${JSON.stringify(Object.fromEntries(tags))}), sent ${n}: ${JSON.stringify(answered.get(pair) ?? [])}`);
        }
      }

      const stats = {
        seed: SEED, dialect, ...timings, sends: sends.length, files, sinkCopies: sink.messages.length, expectedCopies, duplicates, duplicateExamples, crossTenantMessages: crossTenant,
        replies: replies.size, internalReplies, externalReplies, internalRepliesOutsideTenant: internalOutsideTenant, internalRepliesPastForwarding: internalPastForwarding, agent: agent.status(),
      };
      tc.diagnostic(`isolation ${JSON.stringify(stats)}`);
      if (problems.length > 0) assert.fail(`seed ${SEED} (replay: HMC_ISOLATION_SEED=${SEED}): ${problems.length} discrepancies, the first ones:\n${problems.slice(0, 15).join('\n')}`);
      assert.equal(agent.status().replies, replies.size, 'every reply the agent sent was found, once');
      assert.ok(internalReplies > 0 && externalReplies > 0, `both kinds of reply were exercised: ${internalReplies} internal, ${externalReplies} external`);
    });
  });
}
