import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg, type MailOrg } from './mail-support.js';
import { dataplaneSkip, eventually, folderSubjects, freePorts, startDataplane, startSink, workDir, type RunningDataplane } from './dataplane-support.js';

/**
 * Mail routing through the real data plane (issue 5 acceptance): aliases, domain aliases, forwarding and
 * group expansion deliver to exactly the intended mailboxes; unknown recipients and suspended tenants are
 * refused at RCPT; two organizations with the same local parts never see each other's mail; authenticated
 * submission lets a user send only as its own addresses or those it was granted, never another tenant's;
 * the plan's protocol switches and password changes take effect at the next login.
 */

const tag = () => randomBytes(4).toString('hex');

for (const dialect of DIALECTS) {
  describe(`data plane mail routing and submission (${dialect})`, { skip: dataplaneSkip }, () => {
    let t: TestPlatform;
    let work: ReturnType<typeof workDir>;
    let sink: Awaited<ReturnType<typeof startSink>>;
    let dp: RunningDataplane | undefined;
    let ports: { smtp: number; submission: number; imap: number };
    let a: MailOrg;
    let b: MailOrg;
    const pw = new Map<string, string>();
    const ids = new Map<string, string>();

    /** A user with a mailbox; remembers its password (by login) and mailbox id (by a short name). */
    async function person(o: MailOrg, local: string, name = `${local}@${o.domainName}`): Promise<string> {
      const login = `${local}@${o.domainName}`;
      const password = `pw-${tag()}`;
      const u = await t.ok('POST', `${o.orgUrl}/users?wait=true`, { login, password });
      const m = await t.ok('POST', `${o.orgUrl}/mailboxes?wait=true`, { kind: 'user', userId: u.id, planId: o.mailboxPlanId });
      pw.set(login, password);
      ids.set(name, m.id);
      ids.set(`user:${name}`, u.id);
      return login;
    }
    const inbox = (login: string) => folderSubjects(ports.imap, login, pw.get(login)!);

    before(async () => {
      work = workDir();
      // the platform reloads the Postfix it manages under this root when a domain changes class
      t = await startTestPlatform(dialect, { config: { dataplaneRoot: join(work.path, 'planes') } });
      sink = await startSink();
      const [smtp, submission, lmtp, imap] = (await freePorts(4)) as [number, number, number, number];
      ports = { smtp, submission, imap };
      const srv = await t.ok('POST', '/api/v1/mail-servers', { name: 'dp-mail', lmtpEndpoint: `127.0.0.1:${lmtp}`, imapEndpoint: `127.0.0.1:${imap}`, mailRoot: join(work.path, 'mail') });
      await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'dp-mail-store', capacityBytes: 2 ** 50 });
      await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'dp-mail-public', purpose: 'public_folder', capacityBytes: 2 ** 50 });
      a = await setupMailOrg(t, 'dpa', { defaultStores: false });
      b = await setupMailOrg(t, 'dpb', { defaultStores: false });
      for (const local of ['ann', 'bob', 'carl']) await person(a, local);
      await person(b, 'ann');
      dp = await startDataplane(t, 'dp-mail', join(work.path, 'planes', 'dp-mail'), [
        '--smtp-port', String(smtp), '--submission-port', String(submission), '--relayhost', `[127.0.0.1]:${sink.port}`,
      ]);
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

    test('aliases, a domain alias, forwarding and nested groups deliver to exactly the intended mailboxes; tenants with the same local parts stay apart', async () => {
      const A = a.domainName;
      const ann = `ann@${A}`;
      const bob = `bob@${A}`;
      const carl = `carl@${A}`;
      const annB = `ann@${b.domainName}`;
      // ann has a second address; bob keeps his mail and forwards a copy to carl
      await t.ok('POST', `${a.orgUrl}/mailboxes/${ids.get(ann)}/aliases?wait=true`, { address: `annie@${A}` }, a.orgAdmin);
      await t.ok('PATCH', `${a.orgUrl}/mailboxes/${ids.get(bob)}?wait=true`, { forwarding: { to: carl, mode: 'deliver_and_forward' } }, a.orgAdmin);
      // info@ is a shared mailbox that only forwards to ann
      const info = await t.ok('POST', `${a.orgUrl}/mailboxes?wait=true`, { kind: 'shared', primaryAddress: `info@${A}`, planId: a.mailboxPlanId, forwarding: { to: ann, mode: 'forward_only' } }, a.orgAdmin);
      // team@ = ann + bob; all@ = team@ + carl + an outside contact
      const team = await t.ok('POST', `${a.orgUrl}/groups`, { name: 'team' }, a.orgAdmin);
      await t.ok('PUT', `${a.orgUrl}/groups/${team.id}/mail?wait=true`, { primaryAddress: `team@${A}` }, a.orgAdmin);
      for (const m of [ann, bob]) await t.ok('POST', `${a.orgUrl}/groups/${team.id}/mail-members?wait=true`, { memberId: ids.get(m) }, a.orgAdmin);
      const all = await t.ok('POST', `${a.orgUrl}/groups`, { name: 'all' }, a.orgAdmin);
      await t.ok('PUT', `${a.orgUrl}/groups/${all.id}/mail?wait=true`, { primaryAddress: `all@${A}` }, a.orgAdmin);
      const contact = await t.ok('POST', `${a.orgUrl}/contacts?wait=true`, { displayName: 'Partner', externalAddress: 'partner@outside.example' }, a.orgAdmin);
      for (const m of [team.id, ids.get(carl), contact.id]) await t.ok('POST', `${a.orgUrl}/groups/${all.id}/mail-members?wait=true`, { memberId: m }, a.orgAdmin);
      // B has the same local parts: its own ann and a team@ of its own
      const teamB = await t.ok('POST', `${b.orgUrl}/groups`, { name: 'team' }, b.orgAdmin);
      await t.ok('PUT', `${b.orgUrl}/groups/${teamB.id}/mail?wait=true`, { primaryAddress: `team@${b.domainName}` }, b.orgAdmin);
      await t.ok('POST', `${b.orgUrl}/groups/${teamB.id}/mail-members?wait=true`, { memberId: ids.get(annB) }, b.orgAdmin);
      // a domain alias of A's domain
      const alias = await t.ok('POST', `${a.orgUrl}/domains`, { name: `alias-${A}` }, a.orgAdmin);
      await t.ok('PUT', `${a.orgUrl}/domains/${alias.id}/accepted`, { aliasOf: a.domainId }, a.orgAdmin);
      const aliasDomain = `alias-${A}`;

      const mx = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true });
      const expected = new Map<string, string[]>([[ann, []], [bob, []], [carl, []], [annB, []]]);
      const external: string[] = [];
      try {
        const send = async (to: string, receivers: string[], outside = false) => {
          const subject = `to ${to} ${tag()}`;
          const sent = await mx.sendMail({ from: 'someone@remote.example', to, subject, text: 'routing\n' });
          assert.deepEqual(sent.accepted.map((x) => String(x).toLowerCase()), [to.toLowerCase()]);
          for (const r of receivers) expected.get(r)!.push(subject);
          if (outside) external.push(subject);
        };
        await send(ann, [ann]);
        await send(`annie@${A}`, [ann]);
        await send(`ann@${aliasDomain}`, [ann]);
        await send(`Ann@${A.toUpperCase()}`, [ann]);
        await send(bob, [bob, carl]);
        await send(`info@${A}`, [ann]);
        await send(`team@${A}`, [ann, bob, carl]);
        await send(`team@${aliasDomain}`, [ann, bob, carl]);
        // carl is reached twice (directly and through bob's forward): Postfix delivers one copy
        await send(`all@${A}`, [ann, bob, carl], true);
        await send(annB, [annB]);
        await send(`team@${b.domainName}`, [annB]);
        // one message to five addresses that all reach ann (two of them bob and, through him, carl): one copy each
        const many = [ann, `annie@${A}`, `Annie@${aliasDomain}`, `info@${A}`, `team@${A}`];
        const manySubject = `to ${many.length} addresses ${tag()}`;
        const manySent = await mx.sendMail({ from: 'someone@remote.example', to: many, subject: manySubject, text: 'once\n' });
        assert.equal(manySent.accepted.length, many.length);
        for (const r of [ann, bob, carl]) expected.get(r)!.push(manySubject);

        // unknown addresses are refused at RCPT, so nothing is queued to bounce later (no backscatter)
        for (const to of [`ghost@${A}`, `ghost@${aliasDomain}`, `bob@${b.domainName}`, 'x@unhosted.example']) {
          await assert.rejects(mx.sendMail({ from: 'someone@remote.example', to, subject: 'nobody', text: 'x\n' }), (e: any) => {
            assert.equal(e.command, 'RCPT TO', `${to}: ${e.message}`);
            assert.ok(e.responseCode >= 550 && e.responseCode < 560, `${to}: ${e.message}`);
            return true;
          });
        }

        for (const [login, subjects] of expected) {
          const got = await eventually(`${login}'s inbox`, () => inbox(login), (s) => s.length >= subjects.length);
          await new Promise((r) => setTimeout(r, 300)); // nothing more arrives
          assert.deepEqual((await inbox(login)).sort(), [...subjects].sort(), `${login} gets exactly its mail (had ${JSON.stringify(got)})`);
        }
        const out = await eventually('the contact', async () => sink.messages.filter((m) => m.to.includes('partner@outside.example')), (m) => m.length >= external.length);
        assert.deepEqual(out.map((m) => /^Subject: (.*)$/m.exec(m.raw)?.[1]).sort(), external.sort());
        // the shared mailbox that only forwards keeps nothing
        const db = t.platform.store.db;
        assert.equal((await db.selectFrom('dp_virtual_aliases').select('destination').where('address', '=', `info@${A}`).execute()).map((r) => r.destination).join(), ann);
        assert.ok(info.id);
      } finally {
        mx.close();
      }
    });

    test("a suspended organization's mail is refused at RCPT and its users cannot log in; resuming restores both", async () => {
      const annB = `ann@${b.domainName}`;
      const mx = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true });
      try {
        await t.ok('POST', `/api/v1/organizations/${b.org.id}/suspend?wait=true`, undefined, b.resellerAdmin);
        await assert.rejects(mx.sendMail({ from: 'someone@remote.example', to: annB, subject: 'while suspended', text: 'x\n' }), (e: any) => {
          assert.equal(e.command, 'RCPT TO', e.message);
          assert.ok(e.responseCode >= 550 && e.responseCode < 560, e.message);
          return true;
        });
        await assert.rejects(inbox(annB), 'no IMAP login while suspended');
        await t.ok('POST', `/api/v1/organizations/${b.org.id}/resume?wait=true`, undefined, b.resellerAdmin);
        const subject = `after resume ${tag()}`;
        // the resume reloads Postfix; a connection that raced the reload may still meet an old process
        await eventually('accepted after resume', () => mx.sendMail({ from: 'someone@remote.example', to: annB, subject, text: 'x\n' }).then(() => true, () => false), (ok) => ok, 10_000);
        await eventually('delivery after resume', () => inbox(annB), (s) => s.includes(subject));
      } finally {
        mx.close();
      }
    });

    test('submission: a user sends as its own addresses and granted ones, never as another user or tenant without a grant', async () => {
      const A = a.domainName;
      const ann = `ann@${A}`;
      const submit = (user: string, pass: string) => nodemailer.createTransport({ host: '127.0.0.1', port: ports.submission, secure: false, ignoreTLS: true, auth: { user, pass } });
      const s = submit(ann, pw.get(ann)!);
      const sentAs = async (from: string) => {
        const subject = `from ${from} ${tag()}`;
        const r = await s.sendMail({ envelope: { from, to: ['friend@outside.example'] }, from, to: 'friend@outside.example', subject, text: 'x\n' });
        assert.deepEqual(r.accepted, ['friend@outside.example']);
        await eventually(`${from} relayed`, async () => sink.messages.filter((m) => m.from === from && m.raw.includes(subject)), (m) => m.length === 1);
      };
      const refusedAs = async (from: string) => {
        await assert.rejects(s.sendMail({ envelope: { from, to: ['friend@outside.example'] }, from, to: 'friend@outside.example', subject: 'no', text: 'x\n' }), (e: any) => {
          assert.ok(e.responseCode >= 550 && e.responseCode < 560, `${from}: ${e.message}`);
          return true;
        });
      };
      try {
        await sentAs(ann);
        await sentAs(`annie@${A}`); // her alias (added by the routing test, or now)
        await sentAs(`ann@alias-${A}`); // the domain alias spelling of her address
        await refusedAs(`bob@${A}`);
        await refusedAs(`team@${A}`);
        await refusedAs(`ann@${b.domainName}`); // the other tenant's ann
        await refusedAs('ceo@outside.example');
        // grants: send-as on bob's mailbox and on the team group
        await t.ok('PUT', `${a.orgUrl}/mailboxes/${ids.get(`bob@${A}`)}/send-as/${ids.get(`user:${ann}`)}?wait=true`, undefined, a.orgAdmin);
        await sentAs(`bob@${A}`);
        const teamId = (await t.platform.store.db.selectFrom('mail_groups').select('group_id').where('primary_address', '=', `team@${A}`).executeTakeFirstOrThrow()).group_id;
        await t.ok('PUT', `${a.orgUrl}/groups/${teamId}/send-as/${ids.get(`user:${ann}`)}?wait=true`, undefined, a.orgAdmin);
        await sentAs(`team@${A}`);
        await refusedAs(`carl@${A}`);
        // a grant cannot cross tenants: B's ann still cannot send as A's addresses
        const sB = submit(`ann@${b.domainName}`, pw.get(`ann@${b.domainName}`)!);
        try {
          await assert.rejects(sB.sendMail({ envelope: { from: ann, to: ['friend@outside.example'] }, from: ann, to: 'friend@outside.example', subject: 'no', text: 'x\n' }));
        } finally {
          sB.close();
        }
      } finally {
        s.close();
      }
      // no login, wrong password: refused
      const anon = nodemailer.createTransport({ host: '127.0.0.1', port: ports.submission, secure: false, ignoreTLS: true });
      await assert.rejects(anon.sendMail({ from: ann, to: 'friend@outside.example', subject: 'anon', text: 'x\n' }));
      anon.close();
      const wrong = submit(ann, 'not-her-password');
      await assert.rejects(wrong.sendMail({ from: ann, to: 'friend@outside.example', subject: 'wrong', text: 'x\n' }), (e: any) => e.code === 'EAUTH');
      wrong.close();
    });

    test('hard quota: a message that would not fit is refused (at RCPT when the client declares its size, else at DATA and bounced to the sender); crossing the warning size sends one notice', async () => {
      const KiB = 1024;
      const plan = await t.ok('POST', '/api/v1/plans/mailbox', { name: 'dp-tiny', issueWarningQuota: 20 * KiB, prohibitSendQuota: 40 * KiB, prohibitSendReceiveQuota: 60 * KiB }, a.resellerAdmin);
      await t.ok('PUT', `${a.orgUrl}/available-plans/${plan.id}`, undefined, a.resellerAdmin);
      const login = `tiny@${a.domainName}`;
      const password = `pw-${tag()}`;
      const u = await t.ok('POST', `${a.orgUrl}/users?wait=true`, { login, password });
      await t.ok('POST', `${a.orgUrl}/mailboxes?wait=true`, { kind: 'user', userId: u.id, planId: plan.id });
      pw.set(login, password);
      const mx = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true });
      const body = `${'x'.repeat(76)}\n`.repeat(130); // ~10 KiB: five fit in 60 KiB with the notice, a sixth does not
      const delivered: string[] = [];
      try {
        // five fit (under 60 KiB); the second takes the mailbox past 20 KiB
        for (let i = 0; i < 5; i++) {
          const subject = `fill ${i} ${tag()}`;
          await mx.sendMail({ from: 'someone@remote.example', to: login, subject, text: body });
          delivered.push(subject);
          await eventually(`fill ${i}`, () => inbox(login), (s) => s.includes(subject));
        }
        const notices = (await inbox(login)).filter((s) => s === 'Your mailbox is almost full');
        assert.equal(notices.length, 1, 'exactly one warning for crossing issueWarningQuota');

        // declared size (MAIL FROM SIZE=): Dovecot's quota-status refuses at RCPT, nothing is queued
        await assert.rejects(mx.sendMail({ envelope: { from: 'someone@remote.example', to: [login], size: body.length } as any, from: 'someone@remote.example', to: login, subject: 'too much', text: body }), (e: any) => {
          assert.equal(e.command, 'RCPT TO', e.message);
          assert.equal(e.responseCode, 552, e.message);
          assert.match(e.message, /5\.2\.2/);
          return true;
        });
        // undeclared: accepted by Postfix, refused by LMTP at DATA (552 5.2.2), bounced to the sender
        const late = `late ${tag()}`;
        await mx.sendMail({ from: 'late-sender@remote.example', to: login, subject: late, text: body });
        const dsn = await eventually('the bounce', async () => sink.messages.filter((m) => m.to.includes('late-sender@remote.example')), (m) => m.length === 1);
        assert.match(dsn[0]!.raw, /5\.2\.2/);
        assert.equal(dsn[0]!.from, '', 'a bounce has the null sender');
        const final = await inbox(login);
        assert.ok(!final.includes(late));
        assert.deepEqual(final.filter((s) => s !== 'Your mailbox is almost full').sort(), delivered.sort());
        assert.equal(final.filter((s) => s === 'Your mailbox is almost full').length, 1, 'still one warning');
        // the usage Dovecot counts, through the API: the five messages and the notice, against the 60 KiB quota
        const used = await t.ok('GET', `${a.orgUrl}/mailboxes/${ids.get(login) ?? (await t.platform.store.db.selectFrom('mailboxes').select('id').where('user_id', '=', u.id).executeTakeFirstOrThrow()).id}/usage`, undefined, a.orgAdmin);
        assert.equal(used.messages, 6);
        assert.equal(used.limitBytes, 60 * KiB);
        assert.ok(used.bytes > 5 * body.length && used.bytes <= 60 * KiB, JSON.stringify(used));
      } finally {
        mx.close();
      }
    });

    test('hmc check compares the database with the data plane (users, quota rules, usage, orphaned maildirs); --repair removes what a purge left and flushes a stale auth cache', async () => {
      const check = async () => (await t.ok('GET', '/api/v1/check')) as { ok: boolean; findings: { code: string; objectId: string | null; repairable: boolean; stored: unknown; expected: unknown }[] };
      const dpFindings = async () => (await check()).findings.filter((f) => f.code.startsWith('dataplane_'));
      assert.deepEqual(await dpFindings(), [], 'the data plane matches the database');

      // a maildir nobody owns (its mailbox purged, say) and a message file dropped in behind Dovecot's back
      const ann = `ann@${a.domainName}`;
      const annId = ids.get(ann)!;
      const row = await t.platform.store.db.selectFrom('mailboxes').select(['store_id', 'org_id']).where('id', '=', annId).executeTakeFirstOrThrow();
      const mailRoot = join(work.path, 'mail');
      const ghostId = 'mbx_01ZZZZZZZZZZZZZZZZZZZZZZZZ';
      const ghost = join(mailRoot, row.store_id!, row.org_id, ghostId, 'Maildir', 'cur');
      mkdirSync(ghost, { recursive: true });
      const annCur = join(mailRoot, row.store_id!, row.org_id, annId, 'Maildir', 'cur');
      for (const d of ['cur', 'new', 'tmp']) mkdirSync(join(annCur, '..', d), { recursive: true });
      const stray = `${'y'.repeat(76)}\n`.repeat(60);
      writeFileSync(join(annCur, `${Date.now()}.stray.hmc:2,S`), `From: x@remote.example\nSubject: stray\n\n${stray}`);
      execFileSync('chown', ['-R', '5000:5000', join(mailRoot, row.store_id!, row.org_id)]);

      const found = await dpFindings();
      const orphan = found.find((f) => f.code === 'dataplane_orphan_maildir');
      assert.ok(orphan && orphan.objectId === ghostId && orphan.repairable, JSON.stringify(found));
      // Dovecot's count quota picks the dropped file up at its next access: the check reads usage back and
      // finds no drift between the counter and the folders (that finding is for backends that can drift)
      assert.deepEqual(found.filter((f) => f.code !== 'dataplane_orphan_maildir'), []);

      const repaired = await t.ok('POST', '/api/v1/check/repair?wait=true');
      assert.equal(repaired.dataplaneItems, 1);
      assert.deepEqual(await dpFindings(), [], 'repaired: the orphan is gone and the quota recalculated');
      assert.ok(!existsSync(join(mailRoot, row.store_id!, row.org_id, ghostId)));

      // a quota changed behind the engine's back (an UPDATE by hand): Dovecot keeps answering from its auth cache
      // (filled by the check's own lookups) until the TTL runs out; the check sees the drift, the repair flushes
      const db = t.platform.store.db;
      const was = Number((await db.selectFrom('mailboxes').select('prohibit_send_receive_quota').where('id', '=', annId).executeTakeFirstOrThrow()).prohibit_send_receive_quota);
      for (const [from, to] of [[was, was + 1024 * 1024], [was + 1024 * 1024, was]] as const) {
        await db.updateTable('mailboxes').set({ prohibit_send_receive_quota: to }).where('id', '=', annId).execute();
        const drift = await dpFindings();
        assert.deepEqual(drift.map((f) => [f.code, f.objectId, f.stored, f.expected, f.repairable]), [['dataplane_quota_rule_drift', annId, Math.floor(from / 1024), Math.floor(to / 1024), true]]);
        const flushed = await t.ok('POST', '/api/v1/check/repair?wait=true');
        assert.equal(flushed.dataplaneItems, 1, 'one auth-cache flush for the server');
        assert.deepEqual(await dpFindings(), [], 'Dovecot answers with the quota the database holds');
      }
    });

    test('a deleted mailbox is out of the mail path at once (mail refused, no login) and a restore brings it back with its mail', async () => {
      const dora = await person(a, 'dora');
      const url = `${a.orgUrl}/mailboxes/${ids.get(dora)}`;
      const mx = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true });
      try {
        const before = `before ${tag()}`;
        await mx.sendMail({ from: 'someone@remote.example', to: dora, subject: before, text: 'x\n' });
        await eventually('delivery', () => inbox(dora), (s) => s.includes(before));
        // the request is done once every Dovecot here forgot what its auth cache held (dataplane/auth-cache.ts)
        await t.ok('DELETE', `${url}?wait=true`, undefined, a.orgAdmin);
        await assert.rejects(mx.sendMail({ from: 'someone@remote.example', to: dora, subject: 'while deleted', text: 'x\n' }), (e: any) => {
          assert.equal(e.command, 'RCPT TO', e.message);
          assert.equal(e.responseCode, 550, e.message);
          return true;
        });
        await assert.rejects(inbox(dora), 'no login while deleted');
        await t.ok('POST', `${url}/restore?wait=true`, undefined, a.orgAdmin);
        const after = `after ${tag()}`;
        await mx.sendMail({ from: 'someone@remote.example', to: dora, subject: after, text: 'x\n' });
        const got = await eventually('delivery after the restore', () => inbox(dora), (s) => s.includes(after));
        assert.deepEqual(got.sort(), [after, before].sort(), 'the mail from before the delete is still there');
      } finally {
        mx.close();
      }
    });

    test('when its retention is over, a deleted mailbox is purged from the data plane: its maildir is gone, no restore', async () => {
      const erin = await person(a, 'erin');
      const url = `${a.orgUrl}/mailboxes/${ids.get(erin)}`;
      const row = await t.platform.store.db.selectFrom('mailboxes').select(['store_id', 'org_id']).where('id', '=', ids.get(erin)!).executeTakeFirstOrThrow();
      const home = join(work.path, 'mail', row.store_id!, row.org_id, ids.get(erin)!);
      const mx = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true });
      try {
        const subject = `kept until the purge ${tag()}`;
        await mx.sendMail({ from: 'someone@remote.example', to: erin, subject, text: 'x\n' });
        await eventually('delivery', () => inbox(erin), (s) => s.includes(subject));
      } finally {
        mx.close();
      }
      assert.ok(existsSync(join(home, 'Maildir')), home);
      const deleted = await t.ok('DELETE', `${url}?wait=true`, undefined, a.orgAdmin);
      assert.ok(deleted.purgeRequestId && Date.parse(deleted.purgeAfter) > Date.now() + 3600_000, JSON.stringify(deleted));
      assert.equal((await t.ok('GET', `/api/v1/requests/${deleted.purgeRequestId}`)).state, 'running', 'waits for the retention');
      assert.ok(existsSync(join(home, 'Maildir')), 'kept, restorable, during the retention');
      // the retention is over: the purge's jobs come due now (they are scheduled for purgeAfter)
      await t.platform.store.db.updateTable('jobs').set({ run_at: Date.now() }).where('request_id', '=', deleted.purgeRequestId).where('state', '=', 'queued').execute();
      assert.equal((await t.settle(deleted.purgeRequestId, 30_000)).state, 'succeeded');
      assert.ok(!existsSync(home), 'the purge removed the maildir');
      for (const r of [await t.call('GET', url, { token: a.orgAdmin }), await t.call('POST', `${url}/restore`, { token: a.orgAdmin })]) {
        assert.equal(r.statusCode, 404, r.body);
        assert.equal(r.json().code, 'not_found');
      }
      await assert.rejects(inbox(erin), 'no login');
      const left = (await t.ok('GET', '/api/v1/check')).findings.filter((f: any) => f.code.startsWith('dataplane_'));
      assert.deepEqual(left, [], 'nothing of it left for hmc check to find');
    });

    test("the plan's protocol switches and a password change take effect at the next login", async () => {
      const carl = `carl@${a.domainName}`;
      const url = `${a.orgUrl}/mailboxes/${ids.get(carl)}`;
      assert.ok(Array.isArray(await inbox(carl)));
      await t.ok('PATCH', `${url}?wait=true`, { overrides: { protocols: ['pop3', 'submission'] } }, a.orgAdmin);
      await assert.rejects(inbox(carl), 'IMAP switched off');
      const s = nodemailer.createTransport({ host: '127.0.0.1', port: ports.submission, secure: false, ignoreTLS: true, auth: { user: carl, pass: pw.get(carl)! } });
      await s.verify();
      s.close();
      await t.ok('PATCH', `${url}?wait=true`, { overrides: { protocols: ['imap'] } }, a.orgAdmin);
      assert.ok(Array.isArray(await inbox(carl)));
      const s2 = nodemailer.createTransport({ host: '127.0.0.1', port: ports.submission, secure: false, ignoreTLS: true, auth: { user: carl, pass: pw.get(carl)! } });
      await assert.rejects(s2.verify(), (e: any) => e.code === 'EAUTH', 'submission switched off');
      s2.close();
      await t.ok('PATCH', `${url}?wait=true`, { overrides: null }, a.orgAdmin);

      const old = pw.get(carl)!;
      const fresh = `pw-${tag()}`;
      await t.ok('POST', `${a.orgUrl}/users/${ids.get(`user:${carl}`)}/password?wait=true`, { password: fresh }, a.orgAdmin);
      pw.set(carl, fresh);
      assert.ok(Array.isArray(await inbox(carl)), 'the new password works at once');
      await assert.rejects(folderSubjects(ports.imap, carl, old), 'the old one no longer does');
    });
  });
}
