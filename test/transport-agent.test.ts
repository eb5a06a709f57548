import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { ImapFlow } from 'imapflow';
import { DIALECTS } from '../src/store/testing.js';
import { makeStamp } from '../src/transport/stamp.js';
import { TransportAgent } from '../src/transport/agent.js';
import { DomainCache } from '../src/transport/domain-cache.js';
import { agentDataplanes } from '../src/transport/service.js';
import { startTestPlatform, unreachableDatabase, type TestPlatform } from './support.js';
import { people, setupMailOrg, type MailOrg } from './mail-support.js';
import { dataplaneSkip, eventually, freePorts, registerMailServer, startDataplane, startSink, workDir, type RunningDataplane } from './dataplane-support.js';

/**
 * The transport agent (transport/agent.ts) in Postfix's mail path, with real Postfix, Dovecot and the
 * platform database: which auto-reply text each kind of sender gets (the issue's matrix), RFC 3834's
 * exclusions, once per sender per period, scheduled windows, and the internal stamp.
 */

const tag = () => randomBytes(4).toString('hex');
const SECRET = 'transport-test-secret-0123456789abcdef';
const INTERNAL = 'INTERNAL: back Monday, call my mobile 555-0100';
const EXTERNAL = 'EXTERNAL: I am out of the office.';

interface Sent {
  from: string;
  to: string[];
  subject: string;
  headers?: Record<string, string>;
  auth?: { user: string; pass: string };
  /** DSN parameters (nodemailer's: id = ENVID, return = RET, notify = NOTIFY of every recipient) */
  dsn?: { id?: string; return?: 'headers' | 'full'; notify?: string };
}

/** One SMTP transaction (null sender allowed), raw message built here. */
async function smtp(port: number, m: Sent): Promise<void> {
  const raw = [
    `From: <${m.from || 'nobody@remote.example'}>`, `To: ${m.to.map((t) => `<${t}>`).join(', ')}`, `Subject: ${m.subject}`,
    `Message-ID: <${tag()}.${Date.now()}@test.example>`, `Date: ${new Date().toUTCString()}`,
    ...Object.entries(m.headers ?? {}).map(([k, v]) => `${k}: ${v}`), '', `body of ${m.subject}`, '',
  ].join('\r\n');
  const c = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, name: 'client.test' });
  await new Promise<void>((res, rej) => {
    c.once('error', rej);
    c.connect(() => res());
  });
  try {
    if (m.auth) await new Promise<void>((res, rej) => c.login(m.auth!, (e) => (e ? rej(e) : res())));
    await new Promise<void>((res, rej) => c.send({ from: m.from, to: m.to, ...(m.dsn ? { dsn: m.dsn } : {}) }, raw, (e) => (e ? rej(e) : res())));
  } finally {
    c.quit();
  }
}

interface Fetched {
  subject: string;
  source: string;
}

async function inbox(port: number, user: string, pass: string): Promise<Fetched[]> {
  const client = new ImapFlow({ host: '127.0.0.1', port, secure: false, auth: { user, pass }, logger: false });
  await client.connect();
  try {
    const lock = await client.getMailboxLock('INBOX');
    try {
      const out: Fetched[] = [];
      if (client.mailbox && client.mailbox.exists) {
        for await (const msg of client.fetch('1:*', { envelope: true, source: true })) out.push({ subject: msg.envelope?.subject ?? '', source: msg.source?.toString('utf8') ?? '' });
      }
      return out;
    } finally {
      lock.release();
    }
  } finally {
    await client.logout().catch(() => {});
  }
}

/** The body text of a reply (MailComposer writes short UTF-8 text as quoted-printable or 7bit). */
const bodyOf = (source: string) => source.slice(source.indexOf('\r\n\r\n') + 4).replace(/=\r\n/g, '').trim();

for (const dialect of DIALECTS) {
  describe(`transport agent: tenant-aware auto-replies in the mail path (${dialect})`, { skip: dataplaneSkip }, () => {
    let t: TestPlatform;
    let work: ReturnType<typeof workDir>;
    let sink: Awaited<ReturnType<typeof startSink>>;
    let dp: RunningDataplane | undefined;
    let agent: TransportAgent;
    let ports: { smtp: number; submission: number; imap: number };
    let a: MailOrg;
    let b: MailOrg;
    const { pw, person: addPerson } = people();
    let alice: string; // the mailbox with an auto-reply (org A)
    let bob: string; // alice's colleague (org A)
    let dan: string; // another colleague, whose address is forged from outside (org A)
    let carol: string; // another tenant (org B)
    const known = 'friend@partner.example'; // a contact of org A
    const stranger = 'stranger@remote.example';

    const person = (o: MailOrg, local: string) => addPerson(t, o, local);

    const mailboxId = async (o: MailOrg, address: string) =>
      (await t.ok('GET', `${o.orgUrl}/mailboxes?limit=100`, undefined, o.orgAdmin)).items.find((m: { primaryAddress: string }) => m.primaryAddress === address).id as string;

    /**
     * Save alice's auto-reply, then make Postfix's queue manager route another address: it keeps its last
     * route for up to 30 s (resolve_clnt's one-entry cache), so alice's next message would otherwise still take
     * the route it had before the change (through the agent or straight to LMTP).
     */
    async function setAutoReply(body: Record<string, unknown>): Promise<void> {
      await t.ok('PUT', `${a.orgUrl}/mailboxes/${await mailboxId(a, alice)}/auto-reply`, { internalMessage: INTERNAL, externalMessage: EXTERNAL, ...body }, a.orgAdmin);
      const subject = `route-${tag()}`;
      await smtp(ports.smtp, { from: stranger, to: [dan], subject });
      await eventually(`${subject} delivered to dan`, () => inbox(ports.imap, dan, pw.get(dan)!), (l) => l.some((x) => x.subject === subject));
    }

    /** Send, wait until alice has it, then until the agent handed any reply to Postfix; returns the replies sent meanwhile. */
    async function deliverToAlice(m: Omit<Sent, 'to'> & { port?: number }): Promise<number> {
      const before = agent.status().replies;
      const had = (await inbox(ports.imap, alice, pw.get(alice)!)).length;
      await smtp(m.port ?? ports.smtp, { ...m, to: [alice] });
      await eventually(`"${m.subject}" in alice's INBOX`, () => inbox(ports.imap, alice, pw.get(alice)!), (l) => l.length > had && l.some((x) => x.subject === m.subject));
      await agent.settled();
      return agent.status().replies - before;
    }

    /** Replies (subject "Automatic reply: <subject>") that reached `user`'s mailbox. */
    async function repliesIn(user: string, subject: string): Promise<string[]> {
      return (await inbox(ports.imap, user, pw.get(user)!)).filter((x) => x.subject === `Automatic reply: ${subject}`).map((x) => bodyOf(x.source));
    }

    const repliesInSink = (to: string, subject: string) => sink.messages.filter((x) => x.to.includes(to) && x.raw.includes(`Automatic reply: ${subject}`));

    before(async () => {
      work = workDir();
      const [smtpPort, submission, lmtp, imap, agentMx, agentSub, reinject, reply, agentDeliver] = (await freePorts(9)) as number[] as [number, number, number, number, number, number, number, number, number];
      ports = { smtp: smtpPort, submission, imap };
      t = await startTestPlatform(dialect, { config: { port: 0, dataplaneRoot: work.path, transportSecret: SECRET } });
      sink = await startSink();
      await registerMailServer(t, 'dp-agent', join(work.path, 'mail'), { lmtp, imap });
      a = await setupMailOrg(t, 'ara', { defaultStores: false });
      b = await setupMailOrg(t, 'arb', { defaultStores: false });
      alice = await person(a, 'alice');
      bob = await person(a, 'bob');
      dan = await person(a, 'dan');
      carol = await person(b, 'carol');
      await t.ok('POST', `${a.orgUrl}/contacts?wait=true`, { displayName: 'A friend', externalAddress: known }, a.orgAdmin);
      dp = await startDataplane(t, 'dp-agent', join(work.path, 'dp-agent'), [
        '--smtp-port', String(smtpPort), '--submission-port', String(submission), '--relayhost', `[127.0.0.1]:${sink.port}`,
        '--agent-port', String(agentMx), '--agent-submission-port', String(agentSub), '--agent-deliver-port', String(agentDeliver), '--reinject-port', String(reinject), '--reply-port', String(reply),
      ]);
      [agent] = await t.platform.startTransport([dp.manifest]) as [TransportAgent];
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

    test('the matrix: each sender gets exactly the reply its relation to the organization and the audience allow', async () => {
      // sender kinds: how the message is sent and where its reply (if any) is looked for
      const kinds = {
        colleague: { from: () => bob, port: () => ports.submission, auth: () => ({ user: bob, pass: pw.get(bob)! }), where: 'mailbox' },
        // another colleague than bob: each sender is answered once per period
        forgedColleague: { from: () => dan, port: () => ports.smtp, auth: () => undefined, where: 'mailbox' },
        otherTenant: { from: () => carol, port: () => ports.submission, auth: () => ({ user: carol, pass: pw.get(carol)! }), where: 'mailbox' },
        knownOutsider: { from: () => known, port: () => ports.smtp, auth: () => undefined, where: 'sink' },
        stranger: { from: () => stranger, port: () => ports.smtp, auth: () => undefined, where: 'sink' },
        mailingList: { from: () => 'list-bounces@lists.example', port: () => ports.smtp, auth: () => undefined, where: 'sink', headers: { 'List-Id': '<news.lists.example>' } },
        nullSender: { from: () => '', port: () => ports.smtp, auth: () => undefined, where: 'none' },
      } as const;
      type Kind = keyof typeof kinds;
      // expected reply per audience: I internal text, E external text, - none
      const expected: Record<'none' | 'known' | 'all', Record<Kind, 'I' | 'E' | '-'>> = {
        none: { colleague: 'I', forgedColleague: '-', otherTenant: '-', knownOutsider: '-', stranger: '-', mailingList: '-', nullSender: '-' },
        // dan's address is in the organization's address book, so the forged sender is a known (external) one
        known: { colleague: 'I', forgedColleague: 'E', otherTenant: '-', knownOutsider: 'E', stranger: '-', mailingList: '-', nullSender: '-' },
        all: { colleague: 'I', forgedColleague: 'E', otherTenant: 'E', knownOutsider: 'E', stranger: 'E', mailingList: '-', nullSender: '-' },
      };
      for (const audience of ['none', 'known', 'all'] as const) {
        await setAutoReply({ mode: 'on', externalAudience: audience });
        for (const kind of Object.keys(kinds) as Kind[]) {
          const k = kinds[kind];
          const subject = `${audience}-${kind}-${tag()}`;
          const sent = await deliverToAlice({ from: k.from(), port: k.port(), auth: k.auth(), subject, headers: 'headers' in k ? k.headers : {} });
          const want = expected[audience][kind];
          const text = want === 'I' ? INTERNAL : want === 'E' ? EXTERNAL : null;
          assert.equal(sent, text ? 1 : 0, `${audience}/${kind}: replies sent`);
          if (!text) continue;
          if (k.where === 'mailbox') {
            const got = await eventually(`${audience}/${kind} reply`, () => repliesIn(k.from(), subject), (l) => l.length > 0);
            assert.deepEqual(got, [text], `${audience}/${kind}`);
          } else {
            const got = await eventually(`${audience}/${kind} reply`, async () => repliesInSink(k.from(), subject), (l) => l.length > 0);
            assert.equal(got.length, 1);
            assert.equal(got[0]!.from, '', 'null envelope sender');
            assert.match(got[0]!.raw, /^Auto-Submitted: auto-replied/m);
            assert.ok(got[0]!.raw.includes(EXTERNAL) && !got[0]!.raw.includes('INTERNAL'), `${audience}/${kind}: external text only`);
          }
        }
      }
      // nowhere did the internal text leave the organization
      assert.ok(!sink.messages.some((m) => m.raw.includes('INTERNAL:')));
      assert.ok((await inbox(ports.imap, carol, pw.get(carol)!)).every((m) => !m.source.includes('INTERNAL:')));
    });

    test('RFC 3834: automatic, bulk and list mail get no reply; one reply per sender per period; saving the settings starts afresh', async () => {
      await setAutoReply({ mode: 'on', externalAudience: 'all' });
      const automatic: Record<string, string>[] = [{ 'Auto-Submitted': 'auto-generated' }, { Precedence: 'bulk' }, { 'List-Unsubscribe': '<mailto:u@lists.example>' }, { 'X-Auto-Response-Suppress': 'OOF' }];
      for (const headers of automatic) {
        assert.equal(await deliverToAlice({ from: stranger, subject: `auto-${tag()}`, headers }), 0, JSON.stringify(headers));
      }
      assert.equal(await deliverToAlice({ from: 'MAILER-DAEMON@remote.example', subject: `daemon-${tag()}` }), 0);
      // Auto-Submitted: no is a person
      assert.equal(await deliverToAlice({ from: stranger, subject: `first-${tag()}`, headers: { 'Auto-Submitted': 'no' } }), 1);
      assert.equal(await deliverToAlice({ from: stranger, subject: `second-${tag()}` }), 0, 'once per period');
      assert.equal(await deliverToAlice({ from: bob, port: ports.submission, auth: { user: bob, pass: pw.get(bob)! }, subject: `bob-${tag()}` }), 1, 'another sender is answered');
      await setAutoReply({ mode: 'on', externalAudience: 'all' });
      assert.equal(await deliverToAlice({ from: stranger, subject: `after-save-${tag()}` }), 1, 'saved settings answer again');
      // alice writing to herself
      assert.equal(await deliverToAlice({ from: alice, port: ports.submission, auth: { user: alice, pass: pw.get(alice)! }, subject: `self-${tag()}` }), 0);
      // … and from her other addresses: an alias, and her address at a domain alias (found by the isolation test)
      await t.ok('POST', `${a.orgUrl}/mailboxes/${await mailboxId(a, alice)}/aliases?wait=true`, { address: `alice.other@${a.domainName}` }, a.orgAdmin);
      const aliasDomain = `alias-${a.domainName}`;
      const d = await t.ok('POST', `${a.orgUrl}/domains`, { name: aliasDomain }, a.orgAdmin);
      await t.ok('PUT', `${a.orgUrl}/domains/${d.id}/accepted?wait=true`, { aliasOf: a.domainId }, a.orgAdmin);
      await eventually('the domain cache has the domain alias', async () => t.platform.domainCache?.orgOfAddress(`alice@${aliasDomain}`)?.aliasOfName ?? null, (n) => n === a.domainName);
      for (const from of [`alice.other@${a.domainName}`, `alice@${aliasDomain}`]) {
        assert.equal(await deliverToAlice({ from, port: ports.submission, auth: { user: alice, pass: pw.get(alice)! }, subject: `self-${tag()}` }), 0, `alice writing as ${from}`);
      }
    });

    test('scheduled windows are honoured; off sends nothing', async () => {
      const now = Date.now();
      const iso = (ms: number) => new Date(ms).toISOString();
      await setAutoReply({ mode: 'scheduled', startsAt: iso(now + 3600_000), endsAt: iso(now + 7200_000), externalAudience: 'all' });
      assert.equal(await deliverToAlice({ from: stranger, subject: `future-${tag()}` }), 0);
      await setAutoReply({ mode: 'scheduled', startsAt: iso(now - 7200_000), endsAt: iso(now - 3600_000), externalAudience: 'all' });
      assert.equal(await deliverToAlice({ from: stranger, subject: `past-${tag()}` }), 0);
      await setAutoReply({ mode: 'scheduled', startsAt: iso(now - 3600_000), endsAt: iso(now + 3600_000), externalAudience: 'all' });
      assert.equal(await deliverToAlice({ from: stranger, subject: `inside-${tag()}` }), 1);
      await setAutoReply({ mode: 'off', externalAudience: 'all' });
      assert.equal(await deliverToAlice({ from: bob, port: ports.submission, auth: { user: bob, pass: pw.get(bob)! }, subject: `off-${tag()}` }), 0);
    });

    test('the internal stamp: a genuine one from another node counts as authenticated, a forged or copied one does not, and only a genuine one reaches the mailbox', async () => {
      await setAutoReply({ mode: 'on', externalAudience: 'none' });
      const messageIdOf = (subject: string) => `<${subject}@node2.example>`;
      // a stamp made by another agent of the platform (same secret) for bob's message
      const stamped = `stamped-${tag()}`;
      const stamp = makeStamp(Buffer.from(SECRET), bob, messageIdOf(stamped));
      assert.equal(await deliverToAlice({ from: bob, subject: stamped, headers: { 'X-HMC-Stamp': stamp } }), 0,
        'bound to the Message-ID: this message has another one');
      // the same with the right Message-ID is sent through a raw session below
      const raw = (subject: string, stampValue: string) => [`From: <${bob}>`, `To: <${alice}>`, `Subject: ${subject}`, `Message-ID: ${messageIdOf(subject)}`,
        `X-HMC-Stamp: ${stampValue}`, '', 'hello', ''].join('\r\n');
      const sendRaw = async (subject: string, stampValue: string, from = bob) => {
        const before = agent.status().replies;
        const c = new SMTPConnection({ host: '127.0.0.1', port: ports.smtp, ignoreTLS: true });
        await new Promise<void>((res, rej) => {
          c.once('error', rej);
          c.connect(() => res());
        });
        await new Promise<void>((res, rej) => c.send({ from, to: [alice] }, raw(subject, stampValue), (e) => (e ? rej(e) : res())));
        c.quit();
        const got = await eventually(`${subject} delivered`, () => inbox(ports.imap, alice, pw.get(alice)!), (l) => l.some((x) => x.subject === subject));
        await agent.settled();
        return { replies: agent.status().replies - before, delivered: got.find((x) => x.subject === subject)! };
      };
      const genuine = `genuine-${tag()}`;
      const ok = await sendRaw(genuine, makeStamp(Buffer.from(SECRET), bob, messageIdOf(genuine)));
      assert.equal(ok.replies, 1, 'a genuine stamp: internal reply');
      assert.deepEqual(await eventually('internal reply', () => repliesIn(bob, genuine), (l) => l.length > 0), [INTERNAL]);
      assert.equal((ok.delivered.source.match(/^X-HMC-Stamp:/gim) ?? []).length, 1, 'a genuine stamp is kept (it proves nothing for another sender or message)');
      const forged = `forged-${tag()}`;
      const bad = await sendRaw(forged, makeStamp(Buffer.from('another-secret-0123456789abcdefghijkl'), bob, messageIdOf(forged)));
      assert.equal(bad.replies, 0, 'a stamp under another key is worthless (audience none: no external reply)');
      assert.ok(!/^X-HMC-Stamp:/im.test(bad.delivered.source), 'a forged stamp is removed before delivery');
      // … also for a recipient without an auto-reply (the MX listener's cleanup sends every stamped message through the agent)
      const toBob = `forged-to-bob-${tag()}`;
      await smtp(ports.smtp, { from: stranger, to: [bob], subject: toBob, headers: { 'X-HMC-Stamp': makeStamp(Buffer.from('another-secret-0123456789abcdefghijkl'), stranger, '<x@y>') } });
      const bobGot = await eventually(`${toBob} delivered`, () => inbox(ports.imap, bob, pw.get(bob)!), (l) => l.some((x) => x.subject === toBob));
      assert.ok(!/^X-HMC-Stamp:/im.test(bobGot.find((x) => x.subject === toBob)!.source), 'a forged stamp never reaches a mailbox');
      const copied = `copied-${tag()}`;
      const replay = await sendRaw(copied, makeStamp(Buffer.from(SECRET), bob, messageIdOf(genuine)));
      assert.equal(replay.replies, 0, 'a stamp copied from another message');
      const old = `old-${tag()}`;
      const expired = await sendRaw(old, makeStamp(Buffer.from(SECRET), bob, messageIdOf(old), Date.now() - 2 * 24 * 3600_000));
      assert.equal(expired.replies, 0, 'an expired stamp');
      // submitted mail: a stamp the user wrote is replaced by the agent's own
      const sub = `submitted-${tag()}`;
      await deliverToAlice({ from: bob, port: ports.submission, auth: { user: bob, pass: pw.get(bob)! }, subject: sub, headers: { 'X-HMC-Stamp': 'v=1; t=1; s=fake' } });
      const delivered = (await inbox(ports.imap, alice, pw.get(alice)!)).find((x) => x.subject === sub)!;
      const stamps = delivered.source.match(/^X-HMC-Stamp: .*$/gim) ?? [];
      assert.equal(stamps.length, 1);
      assert.ok(!stamps[0]!.includes('fake'));
    });

    test('a domain alias added to the organization is honoured by the agent as soon as the cache has it (no restart)', async (ctx) => {
      await setAutoReply({ mode: 'on', externalAudience: 'none' });
      const aliasName = `alias-${tag()}-${a.domainName}`;
      const d = await t.ok('POST', `${a.orgUrl}/domains`, { name: aliasName }, a.orgAdmin);
      const t0 = Date.now();
      await t.ok('PUT', `${a.orgUrl}/domains/${d.id}/accepted`, { aliasOf: a.domainId }, a.orgAdmin);
      const cached = await eventually('the alias in the domain cache', async () => t.platform.domainCache!.lookup(aliasName), (x) => x !== undefined, 10_000);
      assert.equal(cached!.orgId, a.org.id);
      ctx.diagnostic(`domain alias visible to the agent ${Date.now() - t0} ms after the API call returned`);
      // bob submits as bob@<alias>: an authenticated member of A, so alice answers with the internal text
      const subject = `via-alias-${tag()}`;
      assert.equal(await deliverToAlice({ from: `bob@${aliasName}`, port: ports.submission, auth: { user: bob, pass: pw.get(bob)! }, subject }), 1);
      assert.deepEqual(await eventually('internal reply to the alias spelling', () => repliesIn(bob, subject), (l) => l.length > 0), [INTERNAL]);
    });

    test('with its database unreachable an agent starts from the domain cache snapshot and keeps handing mail back', async () => {
      // the snapshot the platform's running cache writes after its first full load
      await eventually('the snapshot written', async () => existsSync(t.config.domainCacheSnapshot), (x) => x);
      const db = await unreachableDatabase(dialect);
      const cache = new DomainCache({ store: db.store, databaseUrl: db.url, snapshotPath: t.config.domainCacheSnapshot, startTimeoutMs: 3_000 });
      const m = dp!.manifest.agent!;
      const second = new TransportAgent({
        db: db.store.db, cache, secret: Buffer.from(SECRET), hostname: 'agent2.test', replyPeriodMs: 3600_000,
        mx: { host: '127.0.0.1', port: 0 }, submission: { host: '127.0.0.1', port: 0 }, deliver: null,
        reinject: { host: '127.0.0.1', port: m.reinjectPort }, reply: { host: '127.0.0.1', port: m.replyPort },
      });
      try {
        await cache.start();
        assert.equal(cache.status().source, 'snapshot');
        assert.equal(cache.orgOfAddress(bob)?.orgId, a.org.id, 'the organizations come from the snapshot');
        await second.start();
        // speak to it as Postfix's content filter client does
        for (const input of ['mx', 'submission'] as const) {
          const subject = `db-down-${input}-${tag()}`;
          await smtp(second.port(input)!, { from: bob, to: [alice], subject });
          await eventually(`${subject} handed back and delivered`, () => inbox(ports.imap, alice, pw.get(alice)!), (l) => l.some((x) => x.subject === subject));
        }
        await second.settled();
        assert.equal(second.status().messages, 2);
        assert.equal(second.status().replies, 0, 'nothing to answer: mail handed back is answered where it is delivered');
      } finally {
        await second.close();
        await cache.stop();
        await db.close();
      }
    });

    test('only mail that needs the agent passes it: plain MX mail for a mailbox without an answering auto-reply goes straight to LMTP', async () => {
      await setAutoReply({ mode: 'on', externalAudience: 'all' });
      const before = agent.status().messages;
      const subject = `plain-${tag()}`;
      await smtp(ports.smtp, { from: stranger, to: [bob], subject });
      await eventually(`${subject} delivered to bob`, () => inbox(ports.imap, bob, pw.get(bob)!), (l) => l.some((x) => x.subject === subject));
      await agent.settled();
      assert.equal(agent.status().messages, before, 'bob has no auto-reply: the agent never saw the message');
      // the same message to bob and alice: alice's copy through the agent (and answered), bob's straight
      const both = `both-${tag()}`;
      await smtp(ports.smtp, { from: `other-${tag()}@remote.example`, to: [bob, alice], subject: both });
      const bobs = await eventually(`${both} delivered to bob`, () => inbox(ports.imap, bob, pw.get(bob)!), (l) => l.some((x) => x.subject === both));
      const alices = await eventually(`${both} delivered to alice`, () => inbox(ports.imap, alice, pw.get(alice)!), (l) => l.some((x) => x.subject === both));
      const body = (l: Fetched[]) => bodyOf(l.find((x) => x.subject === both)!.source);
      assert.equal(body(alices), body(bobs), 'the copy through the agent has the same body');
      assert.equal(body(alices), `body of ${both}`);
      await agent.settled();
      assert.equal(agent.status().messages, before + 1, 'one delivery through the agent: alice\'s');
    });

    test('the delivery input: one recipient per delivery (a second one is deferred), an address without a route now is deferred', async () => {
      const c = new SMTPConnection({ host: '127.0.0.1', port: agent.port('deliver')!, ignoreTLS: true, name: 'postfix.test' });
      await new Promise<void>((res, rej) => {
        c.once('error', rej);
        c.connect(() => res());
      });
      try {
        const raw = `From: <${stranger}>\r\nSubject: direct-${tag()}\r\n\r\nhello\r\n`;
        const two = await new Promise<{ accepted: unknown[]; rejected: unknown[]; rejectedErrors?: { responseCode?: number }[] }>((res, rej) => c.send({ from: stranger, to: [alice, bob] }, raw, (e, i) => (e ? rej(e) : res(i as never))));
        assert.deepEqual(two.accepted, [alice]);
        assert.deepEqual(two.rejected, [bob]);
        assert.equal(two.rejectedErrors?.[0]?.responseCode, 452, 'Postfix delivers the second recipient separately');
        const none = await new Promise<Error & { responseCode?: number }>((res) => c.send({ from: stranger, to: [`nobody-${tag()}@${a.domainName}`] }, raw, (e) => res(e as never)));
        assert.equal(none?.responseCode, 451, 'no route (disabled, moved, deleted since Postfix took it): retried later');
      } finally {
        c.quit();
      }
      await agent.settled();
    });

    test('DSN: what the sender asked for survives the agent (NOTIFY=SUCCESS gets its notice, ENVID comes back)', async () => {
      await setAutoReply({ mode: 'on', externalAudience: 'none' });
      const auth = { user: bob, pass: pw.get(bob)! };
      const notices = async (envid: string) => (await inbox(ports.imap, bob, pw.get(bob)!)).filter((m) => m.source.includes(`Original-Envelope-Id: ${envid}`));
      // to dan (no auto-reply): the submission input hands it back with the parameters, Postfix delivers to LMTP
      // and sends the notice itself ("relayed": Dovecot's LMTP announces no DSN, so Postfix reports the hand-over
      // to it, as it does for mail that never passes the agent)
      // without NOTIFY=SUCCESS: no notice (checked below, once later notices arrived)
      const quiet = `env-quiet-${tag()}`;
      await smtp(ports.submission, { from: bob, to: [dan], subject: quiet, auth, dsn: { id: quiet } });
      await eventually(`"${quiet}" in dan's INBOX`, () => inbox(ports.imap, dan, pw.get(dan)!), (l) => l.some((x) => x.subject === quiet));
      const toDan = `env-dan-${tag()}`;
      await smtp(ports.submission, { from: bob, to: [dan], subject: toDan, auth, dsn: { id: toDan, notify: 'SUCCESS' } });
      const dans = await eventually('the success notice for dan', () => notices(toDan), (l) => l.length > 0);
      assert.equal(dans.length, 1);
      assert.match(dans[0]!.source, /^Action: relayed\r?\nStatus: 2\.0\.0/m);
      // reported by the hop into the mailbox (the mail server's answer), not at the hand-over to the agent
      assert.match(dans[0]!.source, /^Diagnostic-Code: smtp; 250 2\.0\.0 <[^>]+> \S+ Saved/m);
      assert.match(dans[0]!.source, new RegExp(`^Final-Recipient: rfc822; ?${dan}`, 'm'));
      // to alice (her auto-reply answers): handed back, then delivered by the agent's delivery input, which does
      // not announce DSN: Postfix reports the hand-over itself (relayed) rather than leaving the notice to nobody
      const toAlice = `env-alice-${tag()}`;
      await smtp(ports.submission, { from: bob, to: [alice], subject: toAlice, auth, dsn: { id: toAlice, notify: 'SUCCESS,FAILURE' } });
      const alices = await eventually('the success notice for alice', () => notices(toAlice), (l) => l.length > 0);
      assert.equal(alices.length, 1);
      assert.match(alices[0]!.source, /^Action: relayed\r?\nStatus: 2\.0\.0/m);
      assert.match(alices[0]!.source, new RegExp(`^Final-Recipient: rfc822; ?${alice}`, 'm'));
      assert.match(alices[0]!.source, /^Diagnostic-Code: smtp; 250 Ok: delivered, /m, 'the agent delivered it');
      await eventually(`"${toAlice}" in alice's INBOX`, () => inbox(ports.imap, alice, pw.get(alice)!), (l) => l.some((x) => x.subject === toAlice));
      // a failure after the hand-back is reported per NOTIFY: NEVER gets no bounce, the default one does
      const never = `env-never-${tag()}`;
      await smtp(ports.submission, { from: bob, to: [`refuse-${tag()}@remote.example`], subject: never, auth, dsn: { id: never, notify: 'NEVER' } });
      const bounced = `env-bounced-${tag()}`;
      await smtp(ports.submission, { from: bob, to: [`refuse-${tag()}@remote.example`], subject: bounced, auth, dsn: { id: bounced } });
      const bounces = await eventually('the bounce', () => notices(bounced), (l) => l.length > 0);
      assert.match(bounces[0]!.source, /^Action: failed\r?\nStatus: 5\.1\.1/m);
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(await notices(never), [], 'NOTIFY=NEVER: no bounce');
      // the message sent first asked for no success notice, and got none (its notice would have come first)
      assert.deepEqual(await notices(quiet), []);
    });

    test('an internal reply goes into the sender\'s own mailbox, past its forwarding: it never follows it out of the organization', async () => {
      await setAutoReply({ mode: 'on', externalAudience: 'none' });
      // erin forwards everything (no copy kept) to carol, another tenant: her plan allows external forwarding
      const open = await t.ok('POST', '/api/v1/plans/mailbox', { name: `ara-fwd-${tag()}`, issueWarningQuota: 900 * 1024 ** 2, prohibitSendQuota: 950 * 1024 ** 2, prohibitSendReceiveQuota: 1024 ** 3, externalForwarding: true }, a.resellerAdmin);
      await t.ok('PUT', `${a.orgUrl}/available-plans/${open.id}`, undefined, a.resellerAdmin);
      const erin = `erin-${tag()}@${a.domainName}`;
      const erinPw = `pw-${tag()}`;
      const u = await t.ok('POST', `${a.orgUrl}/users?wait=true`, { login: erin, password: erinPw });
      await t.ok('POST', `${a.orgUrl}/mailboxes?wait=true`, { kind: 'user', userId: u.id, planId: open.id, forwarding: { to: carol, mode: 'forward_only' } }, a.orgAdmin);
      // mail to erin goes to carol: the forwarding works
      const probe = `fwd-probe-${tag()}`;
      await smtp(ports.smtp, { from: stranger, to: [erin], subject: probe });
      await eventually(`${probe} forwarded to carol`, () => inbox(ports.imap, carol, pw.get(carol)!), (l) => l.some((x) => x.subject === probe));
      // erin writes to alice: alice's internal reply lands in erin's own mailbox, not at carol's
      const subject = `fwd-${tag()}`;
      assert.equal(await deliverToAlice({ from: erin, port: ports.submission, auth: { user: erin, pass: erinPw }, subject }), 1);
      const got = await eventually('the internal reply in erin\'s mailbox', async () => (await inbox(ports.imap, erin, erinPw)).filter((x) => x.subject === `Automatic reply: ${subject}`).map((x) => bodyOf(x.source)), (l) => l.length > 0);
      assert.deepEqual(got, [INTERNAL]);
      assert.deepEqual(await repliesIn(carol, subject), [], 'not forwarded to another tenant');
      assert.ok(!sink.messages.some((m) => m.raw.includes(`Automatic reply: ${subject}`)), 'not sent out');
    });

    test('hmc serve finds the data planes rendered with an agent under HMC_DATAPLANE_ROOT', async () => {
      assert.deepEqual(agentDataplanes(work.path).map((m) => m.server.name), ['dp-agent']);
      assert.deepEqual(agentDataplanes(join(work.path, 'nothing-here')), []);
    });

    test('metrics: messages, stamps and replies are counted in /metrics', async () => {
      const res = await t.platform.app!.inject({ method: 'GET', url: '/metrics' });
      assert.match(res.body, /hmc_transport_messages_total\{input="mx",outcome="passed"\} [1-9]/);
      assert.match(res.body, /hmc_transport_messages_total\{input="submission",outcome="passed"\} [1-9]/);
      assert.match(res.body, /hmc_transport_messages_total\{input="deliver",outcome="passed"\} [1-9]/);
      assert.match(res.body, /hmc_transport_auto_replies_total\{kind="internal",outcome="sent"\} [1-9]/);
      assert.match(res.body, /hmc_transport_stamps_total\{result="genuine"\} [1-9]/);
      assert.match(res.body, /hmc_domain_cache_domains [1-9]/);
    });
  });
}
